"""The CLI's thread count: the idle cores, or what the environment says."""

import os

import torch

from protozoo.cli import configure_threads, idle_cores


def test_environment_sets_the_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("PROTOZOO_NUM_THREADS", "1")
        assert configure_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_idle_cores_within_the_affinity():
    assert 1 <= idle_cores(window=0.05) <= len(os.sched_getaffinity(0))
