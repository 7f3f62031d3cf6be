"""Receptive-field boxes persist on disk: a new process reads what an earlier one probed, identically."""

import json
import os
from unittest import mock

import pytest
import torch

import protozoo
from protozoo import receptive_field as rf

SIZE = (64, 64)
CELLS = torch.tensor([[0, 0], [1, 2], [3, 3], [1, 2]])


@pytest.fixture()
def model():
    return protozoo.create_model("protopnet_resnet18", num_classes=2, prototypes_per_class=1, feature_stage=2).eval()


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTOZOO_CACHE", str(tmp_path))
    monkeypatch.delenv("PROTOZOO_RF_DISK_CACHE", raising=False)
    rf.clear_cache()
    yield
    rf.clear_cache()


def no_probe(*args, **kwargs):
    raise AssertionError("probed although the boxes were on disk")


def test_a_new_process_reads_the_probed_boxes(model):
    probed = rf.receptive_field_boxes(model, CELLS, SIZE)
    assert rf.cache_file(rf.cache_key(model, SIZE)).is_file()
    rf.clear_cache()  # what a new process starts with
    with mock.patch.object(rf, "probe_receptive_field_boxes", no_probe):
        assert torch.equal(rf.receptive_field_boxes(model, CELLS, SIZE), probed)
    assert torch.equal(probed, rf.probe_receptive_field_boxes(model, CELLS, SIZE))


def test_new_cells_are_added_to_the_file(model):
    rf.receptive_field_boxes(model, CELLS[:2], SIZE)
    rf.clear_cache()
    both = rf.receptive_field_boxes(model, CELLS, SIZE)  # (3, 3) is probed, the rest read
    stored = json.loads(rf.cache_file(rf.cache_key(model, SIZE)).read_text())["boxes"]
    assert sorted((h, w) for h, w, *_ in stored) == [(0, 0), (1, 2), (3, 3)]
    assert torch.equal(both, rf.probe_receptive_field_boxes(model, CELLS, SIZE))


@pytest.mark.parametrize("content", ["not json", '{"key": "another model", "boxes": [[0, 0, 1, 1, 2, 2]]}', "[]"])
def test_a_garbled_or_foreign_file_is_a_miss(model, content):
    file = rf.cache_file(rf.cache_key(model, SIZE))
    file.parent.mkdir(parents=True)
    file.write_text(content)
    assert torch.equal(rf.receptive_field_boxes(model, CELLS, SIZE), rf.probe_receptive_field_boxes(model, CELLS, SIZE))
    assert json.loads(file.read_text())["key"] == rf._disk_key(rf.cache_key(model, SIZE))  # rewritten


def test_an_other_module_tree_is_an_other_file(model):
    key = rf.cache_key(model, SIZE)
    model.backbone.extra = torch.nn.Identity()  # same config, another architecture behind it
    assert rf.cache_file(rf.cache_key(model, SIZE)) != rf.cache_file(key)


def test_disk_cache_off_and_unwritable_folder(model, tmp_path, monkeypatch):
    monkeypatch.setenv("PROTOZOO_RF_DISK_CACHE", "0")
    boxes = rf.receptive_field_boxes(model, CELLS, SIZE)
    assert rf.cache_file(rf.cache_key(model, SIZE)) is None and not any(tmp_path.iterdir())
    monkeypatch.delenv("PROTOZOO_RF_DISK_CACHE")
    blocked = tmp_path / "a file"
    blocked.write_text("")
    monkeypatch.setenv("PROTOZOO_CACHE", str(blocked))  # receptive_fields/ cannot be made under a file
    rf.clear_cache()
    assert torch.equal(rf.receptive_field_boxes(model, CELLS, SIZE), boxes)
    assert os.listdir(tmp_path) == ["a file"]
