"""The one atomic-write helper: a reader sees the old file or the new one, never a partial one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from protozoo.serialization import atomic_path, read_state_dict, write_json, write_state_dict, write_text


def test_atomic_path_replaces_on_success_and_keeps_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "gallery.png"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_text("new")
        assert target.read_text() == "old"  # not replaced until the write is complete
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["gallery.png"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    write_state_dict({"w": torch.arange(3.0)}, target)
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a fi")
            raise RuntimeError("killed mid-write")
    assert torch.equal(read_state_dict(target)["w"], torch.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_write_json_and_text(tmp_path: Path) -> None:
    write_json({"a": [1, 2]}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'
    write_text("é\n", tmp_path / "README.md")
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == "é\n"
