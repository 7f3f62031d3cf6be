"""DICOM reading: modality LUT, VOI LUT / windowing, MONOCHROME1 inversion, scaling to [0, 1].

pydicom is imported when a DICOM file is first read, so that reading PNGs never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from protozoo.data.errors import CorruptFileError, DatasetLayoutError

if TYPE_CHECKING:
    import pydicom


def _luts():
    """pydicom's ``apply_modality_lut`` and ``apply_voi_lut``."""
    try:  # pydicom >= 2.4 / 3
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom < 2.4
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _voi_output_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """Output range of ``apply_voi_lut`` for ``ds`` (assumes a VOI is present)."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    # Windowing: probe the (monotonic) window function at both extremes.
    low, high = _luts()[1](np.array([-1e12, 1e12]), ds)
    return float(min(low, high)), float(max(low, high))


def dicom_to_float(ds: pydicom.Dataset, *, voi: bool = True) -> np.ndarray:
    """Converts a DICOM dataset's pixels to float32 in [0, 1], bright = dense.

    Steps: modality LUT (rescale slope / intercept); if ``voi`` and the file has a VOI LUT
    or window center / width, :func:`pydicom.pixels.apply_voi_lut` and scaling by the VOI's
    output range; otherwise min-max scaling over the image; finally ``1 - x`` for
    MONOCHROME1 so that the result always reads as MONOCHROME2.

    Args:
        ds: Dataset with pixel data (single frame, one sample per pixel).
        voi: Apply the VOI LUT / windowing when present.

    Returns:
        (H, W) float32 array in [0, 1].
    """
    apply_modality_lut, apply_voi_lut = _luts()
    arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)  # (H, W)
    has_voi = "WindowCenter" in ds or bool(ds.get("VOILUTSequence"))
    if voi and has_voi:
        low, high = _voi_output_range(ds)
        arr = (apply_voi_lut(arr, ds) - low) / max(high - low, 1e-12)
    else:
        low, high = float(arr.min()), float(arr.max())
        arr = (arr - low) / max(high - low, 1e-12)
    arr = arr.clip(0.0, 1.0)
    if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        arr = 1.0 - arr
    return arr.astype(np.float32)


def read_dicom(path: str | Path, *, voi: bool = True) -> torch.Tensor:
    """Reads a single-frame grayscale DICOM file as a (1, H, W) float32 tensor in [0, 1].

    See :func:`dicom_to_float` for the intensity pipeline.

    Args:
        path: DICOM file.
        voi: Apply the VOI LUT / windowing when present.

    Raises:
        DatasetLayoutError: The file does not exist.
        CorruptFileError: The file cannot be parsed or decoded.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"missing DICOM file {path}")
    try:
        ds = pydicom.dcmread(path)
        arr = dicom_to_float(ds, voi=voi)
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, OSError, EOFError) as e:
        raise CorruptFileError(path, e) from e
    if arr.ndim != 2:
        raise CorruptFileError(path, f"expected one grayscale frame, got pixel array of shape {arr.shape}")
    return torch.from_numpy(arr)[None]  # (1, H, W)
