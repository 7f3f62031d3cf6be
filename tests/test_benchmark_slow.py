"""The benchmark's long checks: the quick preset end to end, and a data-parallel run under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("captum")


@pytest.mark.slow
def test_quick_preset(tmp_path):
    from protozoo.benchmark import PRESETS, run

    started = time.perf_counter()
    rows = run(tmp_path, preset="quick", progress=False, log=lambda _: None)
    seconds = time.perf_counter() - started
    quick = PRESETS["quick"]
    assert len(rows) == len(quick["backbones"]) * len(quick["inits"]) * len(quick["methods"])
    scored = [r for r in rows if r["status"] == "ok"]
    # EfficientNet-Lite0 has ImageNet weights offline; every backbone trains from a random init.
    assert {(r["backbone"], r["init"]) for r in scored} >= {("efficientnet_lite0", "imagenet")} | {
        (b, "random") for b in quick["backbones"]
    }
    assert all(0.0 <= r["explanation_f1"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0 for r in scored)
    assert (tmp_path / "report.html").stat().st_size > 10_000
    print(f"quick preset: {len(rows)} rows in {seconds:.0f} s")


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # torchrun passes --master_port to the workers as is: 0 would hang them
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        port,
        "-m",
        "protozoo",
        "benchmark",
        "--out",
        str(tmp_path),
        "--backbones",
        "resnet18",
        "--init",
        "random",
        "--methods",
        "gradcam,prototypes",
        "--epochs",
        "2",
        "--last-layer-epochs",
        "0",
        "--image-size",
        "64",
        "--num-samples",
        "32",
        "--test-samples",
        "8",
        "--faithfulness-samples",
        "2",
        "--perturbations",
        "2",
        "--batch-size",
        "8",
        "--no-progress",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in rows] == ["gradcam", "prototypes"] and all(r["status"] == "ok" for r in rows)
    assert done.stdout.count("[1/1] resnet18 random: training") == 1  # the main process speaks, once
