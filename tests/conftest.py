"""Hermetic test setup: no network, no writes outside temporary folders."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PROTOZOO_CACHE", tempfile.mkdtemp(prefix="protozoo-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
