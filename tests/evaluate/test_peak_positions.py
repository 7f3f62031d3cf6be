"""The windowed peak search of the evaluators finds exactly the peak of the whole upsampled map."""

from __future__ import annotations

import pytest
import torch

from protozoo.evaluate._parts import peak_positions
from protozoo.resample import upsample_bicubic


def whole_map_peaks(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 2) (x, y) of the first maximum of each whole bicubically upsampled map, row-major."""
    flat = upsample_bicubic(maps, size).flatten(1).argmax(dim=1)
    return torch.stack([flat % size[1], flat // size[1]], dim=1)


def similarity_like(n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """ProtoPNet's log similarity of random distances: mostly flat, a few high cells."""
    distances = torch.rand(n, h, w, generator=generator) * 3
    return torch.log((distances + 1) / (distances + 1e-4))


@pytest.mark.parametrize("size", [(224, 224), (96, 64), (7, 7), (5, 3)])
def test_windowed_peaks_equal_whole_map_peaks(size):
    g = torch.Generator().manual_seed(0)
    cases = {
        "gaussian": torch.randn(200, 7, 7, generator=g),
        "smooth": torch.nn.functional.avg_pool2d(torch.randn(200, 1, 11, 11, generator=g), 5, 1)[:, 0],
        "similarity": similarity_like(200, 7, 7, g),
        "non-square": torch.randn(100, 14, 10, generator=g),
        "one cell": torch.randn(10, 1, 1, generator=g),
        "large offset": torch.randn(50, 7, 7, generator=g) * 1e4 + 5e5,
        "negative": -torch.rand(50, 7, 7, generator=g) - 3,
        "ties": torch.randint(0, 3, (200, 7, 7), generator=g).float(),
        "constant": torch.ones(10, 7, 7),
        "zeros": torch.zeros(3, 7, 7),
    }
    for name, maps in cases.items():
        assert torch.equal(peak_positions(maps, size), whole_map_peaks(maps, size)), name


def test_windowed_peaks_of_no_maps_and_of_nan_maps():
    assert peak_positions(torch.zeros(0, 7, 7), (224, 224)).shape == (0, 2)
    maps = torch.randn(4, 7, 7)
    maps[1, 3, 3] = float("nan")  # a NaN map: the whole map is searched, as argmax would
    assert torch.equal(peak_positions(maps, (64, 64)), whole_map_peaks(maps, (64, 64)))
