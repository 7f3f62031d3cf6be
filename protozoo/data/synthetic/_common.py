"""Shared machinery of the synthetic datasets: seeding, splits, shortcut marker, noise.

Every sample is generated on the fly from its own random streams, derived from
``(seed, split, index)`` with :class:`numpy.random.SeedSequence`, so item ``i`` is
identical on every call and in every worker process, and the splits never share
a sample. Images are built as float32 numpy arrays and converted to tensors at
the end of ``generate``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from protozoo.data.base import Item, ItemDataset, OnError, Transform

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}
DEFAULT_NUM_SAMPLES: dict[str, int] = {"train": 512, "val": 128, "test": 256}
NO_BOX: tuple[int, int, int, int] = (-1, -1, -1, -1)


def item_rngs(seed: int, split: str, index: int, n: int) -> list[np.random.Generator]:
    """Returns ``n`` independent generators for one sample.

    Args:
        seed: Dataset seed (non-negative).
        split: "train", "val" or "test".
        index: Sample index.
        n: Number of independent streams (e.g. anatomy, lesions, noise, marker).

    Returns:
        ``n`` generators; the same arguments always give the same streams.
    """
    seq = np.random.SeedSequence([seed, SPLIT_CODES[split], index])
    return [np.random.default_rng(child) for child in seq.spawn(n)]


@lru_cache(maxsize=8)
def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)``, each (H, W) float32; centres are integers."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return yy, xx


@lru_cache(maxsize=8)
def _radial_frequency(height: int, width: int) -> np.ndarray:
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    return np.sqrt(fy**2 + fx**2).astype(np.float32)  # (H, W // 2 + 1)


@lru_cache(maxsize=32)
def _powerlaw_filter(height: int, width: int, beta: float) -> np.ndarray:
    freq = _radial_frequency(height, width).copy()
    freq[0, 0] = np.inf
    return freq ** (-beta / 2.0)  # (H, W // 2 + 1), zero DC


@lru_cache(maxsize=32)
def _gaussian_filter(height: int, width: int, sigma: float) -> np.ndarray:
    freq = _radial_frequency(height, width)
    return np.exp(-2.0 * np.pi**2 * sigma**2 * freq**2).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return (x / (x.std() + 1e-8)).astype(np.float32)


def fractal_noise(rng: np.random.Generator, shape: tuple[int, ...], beta: float = 2.0) -> np.ndarray:
    """Power-law (1/f^beta) noise over the last two axes, zero mean, unit std, float32.

    ``shape`` is (H, W) or (C, H, W). ``beta`` around 1.5 gives grainy texture,
    around 3 cloudy texture.
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    spectrum = np.fft.rfft2(white) * _powerlaw_filter(shape[-2], shape[-1], round(beta, 3))
    return _normalise(np.fft.irfft2(spectrum, s=shape[-2:]))


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the last two axes by FFT (periodic borders), float32."""
    height, width = x.shape[-2:]
    spectrum = np.fft.rfft2(x) * _gaussian_filter(height, width, round(float(sigma), 3))
    return np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)


def soft_inside(sdf: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a signed distance (negative inside, pixels)."""
    return np.clip(0.5 - sdf / width, 0.0, 1.0)


def window(center: np.ndarray, radius: float, height: int, width: int) -> tuple[slice, slice] | None:
    """Row/column slices of the square window of ``radius`` around ``center`` (x, y).

    Returns None when the window lies entirely outside the image.
    """
    x0 = max(int(np.floor(center[0] - radius)), 0)
    x1 = min(int(np.ceil(center[0] + radius)) + 1, width)
    y0 = max(int(np.floor(center[1] - radius)), 0)
    y1 = min(int(np.ceil(center[1] + radius)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def radial_profile(rng: np.random.Generator, amplitude: float, harmonics: int = 4) -> np.ndarray:
    """Random smooth radius modulation ``(harmonics, 2)``: rows (amplitude, phase) for k = 2..."""
    amps = rng.uniform(0.0, amplitude, harmonics) / np.arange(1, harmonics + 1) ** 0.5
    phases = rng.uniform(0.0, 2.0 * np.pi, harmonics)
    return np.stack([amps, phases], axis=1).astype(np.float32)


def modulated_radius(theta: np.ndarray, radius: float, profile: np.ndarray) -> np.ndarray:
    """Radius ``radius * (1 + sum_k a_k cos(k theta + p_k))`` at angles ``theta``."""
    mod = np.ones_like(theta)
    for k, (amp, phase) in enumerate(profile, start=2):
        mod += amp * np.cos(k * theta + phase)
    return radius * mod


def marker_box(label: int, num_classes: int, size: int) -> tuple[int, int, int, int]:
    """Box ``(x0, y0, x1, y1)`` (exclusive ends) of the shortcut tag encoding ``label``.

    The tag is a square of side ``max(4, size // 16)`` along the top edge; its
    horizontal slot is the label (slot 0 at the left, last class at the right).
    """
    side = max(4, size // 16)
    margin = max(1, size // 64)
    span = size - 2 * margin - side
    x0 = margin + int(round(label * span / max(num_classes - 1, 1)))
    return x0, margin, x0 + side, margin + side


def draw_marker(image: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Draws the tag in place on a (C, H, W) image: white square with a black rim."""
    x0, y0, x1, y1 = box
    image[:, y0:y1, x0:x1] = 0.0
    image[:, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = 1.0


class SyntheticDataset(ItemDataset):
    """Base class of the generated datasets: deterministic per-item seeding and the shortcut tag.

    A :class:`protozoo.data.base.ItemDataset` whose splits are generated (so it has its own val
    split) at ``image_size``. Subclasses set ``name`` and ``classes`` and implement :meth:`generate`.

    Args:
        split: "train", "val" or "test".
        image_size: Side of the square images in pixels, generated at that size.
        num_samples: Dataset length; None uses 512 / 128 / 256 for train / val / test.
        seed: Non-negative seed; with split and index it fixes every sample.
        shortcut: Probability in [0, 1] of drawing the shortcut tag. On train the tag
            encodes the true label; on val/test it encodes a uniformly random label.
        transform: Optional callable applied to the whole item dict at the end.
        val_fraction: Only 0 (the val split is generated).
        on_error: Accepted for the common signature (nothing is read from files).
    """

    name: str = "synthetic"
    classes: list[str]
    has_val_split = True

    def __init__(
        self,
        split: str = "train",
        *,
        image_size: int = 128,
        num_samples: int | None = None,
        seed: int = 0,
        shortcut: float = 0.0,
        transform: Transform | None = None,
        val_fraction: float = 0.0,
        on_error: OnError = "raise",
    ) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
        if not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"image_size must be an int >= 32 (the side of the generated square), got {image_size!r}")
        if not 0.0 <= shortcut <= 1.0:
            raise ValueError(f"shortcut must be in [0, 1], got {shortcut}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        super().__init__(
            split,
            transform=transform,
            image_size=int(image_size),
            seed=int(seed),
            val_fraction=val_fraction,
            on_error=on_error,
        )
        self.num_samples = DEFAULT_NUM_SAMPLES[split] if num_samples is None else int(num_samples)
        self.shortcut = float(shortcut)

    def __len__(self) -> int:
        return self.num_samples

    def load(self, index: int) -> Item:
        return self.generate(index)

    def generate(self, index: int) -> Item:
        """Builds item ``index`` without applying the transform."""
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """Stable unique id, e.g. ``"synthetic-mammo/train/000123"``."""
        return f"{self.name}/{self.split}/{index:06d}"

    def _rngs(self, index: int, n: int) -> list[np.random.Generator]:
        return item_rngs(self.seed, self.split, index, n)

    def _apply_shortcut(self, rng: np.random.Generator, label: int, images: list[np.ndarray]) -> Item:
        """Maybe draws the tag on every (C, H, W) image; returns the shortcut item keys.

        Returns:
            ``shortcut_box``: (4,) int64 tensor ``(x0, y0, x1, y1)``, all -1 without tag;
            ``shortcut_label``: the label the tag encodes, -1 without tag.
        """
        box, tag_label = NO_BOX, -1
        if rng.random() < self.shortcut:
            tag_label = label if self.split == "train" else int(rng.integers(self.num_classes))
            box = marker_box(tag_label, self.num_classes, self.image_size)
            for image in images:
                draw_marker(image, box)
        return {"shortcut_box": torch.tensor(box, dtype=torch.int64), "shortcut_label": tag_label}
