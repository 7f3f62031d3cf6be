"""Bicubic upsampling of small maps as two matrix products (what ``F.interpolate`` computes).

Push (ProtoPNet's 95th-percentile boxes) and the consistency/stability evaluators upsample many
small (h, w) similarity maps to the input size; two matmuls with the resampling weights are exact
up to float rounding and far cheaper on the CPU than ``F.interpolate(mode="bicubic")``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


@lru_cache(maxsize=32)
def bicubic_matrix(size_in: int, size_out: int) -> Tensor:
    """(size_out, size_in) matrix of 1-D bicubic resampling exactly as ``F.interpolate`` does it
    (``align_corners=False``, border taps clamped): resampling an identity along one axis."""
    with torch.inference_mode(False):  # a plain tensor, usable with autograd even if first made in inference mode
        eye = torch.eye(size_in)[None, :, None, :]  # (1, size_in, 1, size_in): channel c is e_c along the width
        return F.interpolate(eye, size=(1, size_out), mode="bicubic", align_corners=False)[0, :, 0, :].T


def bicubic_pair(maps: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The (H, h) row and (W, w) column resampling matrices for (..., h, w) maps, on their device."""
    rows = bicubic_matrix(maps.shape[-2], size[0]).to(maps.device)  # (H, h)
    cols = bicubic_matrix(maps.shape[-1], size[1]).to(maps.device)  # (W, w)
    return rows, cols


def upsample_bicubic(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, h, w) -> (N, H, W) bicubic upsampling, ``F.interpolate(..., align_corners=False)``.

    Bicubic resampling is separable: ``Wy @ (map @ Wx.T)`` equals it up to float rounding.
    """
    rows, cols = bicubic_pair(maps, size)
    return rows @ (maps.float() @ cols.T)  # (H, h) @ (N, h, W)
