"""Pixels for display: de-normalising and windowing images, blending heatmaps, drawing boxes.

Display images are (H, W, 3) float arrays in [0, 1]. Grayscale inputs stay gray (R = G = B),
contrast-stretched between their 1st and 99th percentiles as a radiologist's window would.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from torch import Tensor

__all__ = ["BOX_COLOR", "HEATMAP_CMAP", "blend_heatmap", "crop", "draw_box", "to_display", "window"]

HEATMAP_CMAP = "turbo"
BOX_COLOR = "#ffd400"  # yellow: visible on gray anatomy and on the heatmap's blue-to-red


def window(gray: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Contrast-stretch a (H, W) array between its ``low`` and ``high`` percentiles, clipped to [0, 1]."""
    lo, hi = np.percentile(gray, [low, high])
    return np.clip((gray - lo) / max(hi - lo, 1e-8), 0.0, 1.0)


def to_display(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised (C, H, W) image -> (H, W, 3) display array in [0, 1].

    De-normalises with ``mean`` / ``std``; one channel is windowed (:func:`window`) and repeated
    to gray RGB, three channels are clipped to [0, 1].
    """
    c = image.shape[0]
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    pixels = (image.detach().float().cpu() * std_t + mean_t).numpy()  # (C, H, W)
    if c == 1:
        return np.repeat(window(pixels[0])[..., None], 3, axis=2)
    if c == 3:
        return np.clip(pixels.transpose(1, 2, 0), 0.0, 1.0)
    raise ValueError(f"can display 1- or 3-channel images, got {c} channels")


def blend_heatmap(
    rgb: np.ndarray,
    heatmap: np.ndarray | Tensor,
    alpha: float = 0.6,
    cmap: str = HEATMAP_CMAP,
    *,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Alpha-blend a colour-mapped heatmap over an image, more where the heatmap is high.

    The heatmap is min-max scaled to [0, 1] (or scaled from ``value_range`` and clipped); each
    pixel mixes ``a * colour + (1 - a) * image`` with ``a = alpha * heat``, so weakly activated
    regions show the anatomy unchanged and even the hottest spot keeps ``1 - alpha`` of it.

    Args:
        rgb: (H, W, 3) display image in [0, 1].
        heatmap: (H, W) map at the image's size.
        alpha: Opacity of the colour at the heatmap's maximum.
        cmap: Matplotlib colormap name.
        value_range: ``(low, high)`` values shown as no and full colour, for maps that must stay
            comparable with each other (e.g. an image's lesion maps); None: the map's own min and max.

    Returns:
        (H, W, 3) blended image in [0, 1].
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    low, high = (float(heat.min()), float(heat.max())) if value_range is None else value_range
    heat = np.clip((heat - low) / max(high - low, 1e-12), 0.0, 1.0)  # (H, W)
    colour = matplotlib.colormaps[cmap](heat)[..., :3]  # (H, W, 3)
    a = alpha * heat[..., None]
    return np.clip(a * colour + (1 - a) * rgb, 0.0, 1.0)


def crop(array: np.ndarray, box: Sequence[int], margin: float = 0.5) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut a square region around a half-open box ``[x0, y0, x1, y1]`` from a (H, W, ...) array.

    The square is centred on the box, ``1 + 2 * margin`` times its longer side, and shifted (then
    clipped) to stay inside the array.

    Args:
        array: The image (or map).
        box: The box.
        margin: Context kept on each side, as a fraction of the box's longer side.

    Returns:
        The crop and its (x, y) offset in the array.
    """
    x0, y0, x1, y1 = box
    h, w = array.shape[:2]
    side = round(max(x1 - x0, y1 - y0) * (1 + 2 * margin))
    left = min(max(0, (x0 + x1 - side) // 2), max(0, w - side))
    top = min(max(0, (y0 + y1 - side) // 2), max(0, h - side))
    return array[top : top + side, left : left + side], (left, top)


def draw_box(ax: Axes, box: Sequence[int], *, offset: tuple[int, int] = (0, 0), color: str = BOX_COLOR) -> Rectangle:
    """Outline a half-open pixel box on an ``imshow`` axis (pixel centres at integers).

    Args:
        ax: The axis.
        box: ``[x0, y0, x1, y1]``.
        offset: (x, y) of the shown array in the box's coordinates (for crops).
        color: Edge colour.
    """
    x0, y0, x1, y1 = box
    rect = Rectangle(
        (x0 - offset[0] - 0.5, y0 - offset[1] - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2
    )
    ax.add_patch(rect)
    return rect
