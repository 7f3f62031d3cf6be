"""The explanation examples and the ``protozoo explain`` command run end to end on tiny models."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import torch
from explain_fixtures import push_by_hand, tiny_model  # tests/explain is on sys.path (prepend mode)
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from protozoo.cli import explain as explain_cmd

ROOT = Path(__file__).resolve().parents[2]


def _run_example(name: str, out: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_visualize_prototypes_smoke(tmp_path):
    out = _run_example("visualize_prototypes.py", tmp_path)
    assert str(tmp_path / "gallery.png") in out and str(tmp_path / "report.html") in out
    assert Image.open(tmp_path / "gallery.png").size[0] > 300
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()


def test_explain_image_smoke(tmp_path):
    out = _run_example("explain_image.py", tmp_path)
    assert "predicted" in out and "sum over all prototypes" in out
    assert Image.open(tmp_path / "explanation.png").size[0] > 1000


def _write_dicom(path: Path, pixels: np.ndarray) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "MG", 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_cli_explains_png_and_dicom(tmp_path, capsys):
    torch.manual_seed(0)
    model, items = tiny_model("synthetic-mammo", in_chans=1)
    push_by_hand(model, items)
    model.save_pretrained(tmp_path / "model")
    raw = (items[0]["image"][0] * 0.2 + 0.45).clamp(0, 1).numpy()  # roughly de-normalised
    Image.fromarray((raw * 255).astype(np.uint8)).save(tmp_path / "case.png")
    _write_dicom(tmp_path / "case2.dcm", (raw * 4095).astype(np.uint16))

    parser = argparse.ArgumentParser()
    explain_cmd.add_parser(parser.add_subparsers(dest="command"), "explain")
    args = parser.parse_args(
        [
            "explain",
            "--model",
            str(tmp_path / "model"),
            str(tmp_path / "case.png"),
            str(tmp_path / "case2.dcm"),
            "--out",
            str(tmp_path / "out"),
            "--top-k",
            "2",
        ]
    )
    assert explain_cmd.run(args) == 0
    printed = capsys.readouterr().out
    for name in ("case_explanation.png", "case2_explanation.png", "gallery.png", "report.html"):
        assert str(tmp_path / "out" / name) in printed and (tmp_path / "out" / name).is_file()
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
