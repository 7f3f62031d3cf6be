"""The prototype gallery: every prototype as the training patch it was pushed from, one row per class.

The push stores where each prototype came from (``model.provenance``) but not the pixels, so the
images are looked up by ``image_id`` in ``sources``: the dataset the push ran over, with the same
eval transform (items normalised as the model saw them, so the stored boxes line up), or a mapping
``image id -> item`` (or ``-> image``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from protozoo.data.transforms import resolve_data_config
from protozoo.explanation import upsample_maps
from protozoo.family import Family, family_of
from protozoo.intended_use import intended_use
from protozoo.viz.overlay import HEATMAP_CMAP, blend_heatmap, crop, draw_box, to_display

__all__ = ["draw_prototype", "find_sources", "render_gallery", "short_id", "wrap_name"]

GALLERY_TILE_INCHES = 2.2
GALLERY_LABEL_INCHES = 0.5  # left margin for the class names (one line; 0.2 more per further line)
GALLERY_TITLE_INCHES = 0.7  # room above each tile for its title (up to four lines)
BANNER_LINE_INCHES = 0.3  # each line of the intended-use banner
BANNER_COLOR = "#b03a2e"
FONT_SIZE = 9
LABEL_CHARS = 24  # characters of a row label per line: a tile's height at FONT_SIZE + 2, bold


def find_sources(sources: Any, ids: Iterable[str], family: Family | None = None) -> dict[str, Tensor]:
    """Fetch the (C, H, W) images of the given ids.

    Args:
        sources: None, a mapping ``id -> item dict or image``, or a dataset whose items have
            ``id`` and ``image`` (scanned in order until every id is found).
        ids: Image ids to find.
        family: The model's family: a dataset item is read as the family's views (a multi-view
            breast is its CC and MLO images, ids ``"<breast>/cc"``...), as push read it.

    Returns:
        ``id -> image`` for the ids found.
    """
    wanted = {str(i) for i in ids}
    if sources is None or not wanted:
        return {}
    if isinstance(sources, Mapping):
        return {i: _image(sources[i]) for i in wanted if i in sources}
    found: dict[str, Tensor] = {}
    for index in range(len(sources)):
        item = sources[index]
        for single in family.image_views(item).values() if family is not None else [item]:
            if str(single.get("id")) in wanted:
                found[str(single["id"])] = _image(single)
        if len(found) == len(wanted):
            break
    return found


def wrap_words(text: str, width: int) -> list[str]:
    """``text`` on lines of at most ``width`` characters, broken only at spaces (a word longer than
    ``width`` is cut), so hyphenated names (synthetic-mammo, white-ring_eye) stay whole."""
    return textwrap.wrap(text, width, break_on_hyphens=False)


def banner_lines(use: str, width: int) -> list[str]:
    """ "INTENDED USE: ..." wrapped to ``width`` characters, breaking only at spaces (a dataset name
    such as synthetic-mammo stays whole)."""
    return wrap_words(f"INTENDED USE: {use}", width)


def wrap_name(name: str, width: int) -> str:
    """A class name on lines of at most ``width`` characters, broken at spaces, hyphens and ``+``
    (the synthetic parts classes join their parts with ``+``)."""
    lines = textwrap.wrap(name.replace("+", "+ "), width, break_on_hyphens=True) or [name]
    return "\n".join(line.replace("+ ", "+") for line in lines)


def short_id(image_id: Any, width: int = 30) -> str:
    """An image id for a title: its last ``width`` characters, with an ellipsis when cut."""
    text = str(image_id)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _image(value: Any) -> Tensor:
    return value["image"] if isinstance(value, Mapping) else value


def draw_prototype(
    ax: Axes,
    row: dict[str, Any],
    image: Tensor | None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    zoom: bool,
) -> str:
    """Draw a prototype's source on an axis: its self-activation blended over the source image.

    Args:
        ax: The axis.
        row: The prototype's provenance row.
        image: Its (C, H, W) normalised source image, or None when it could not be found: then
            the self-similarity map is drawn alone (at the latent resolution, its cell outlined).
        mean: Normalisation mean of ``image``.
        std: Normalisation std of ``image``.
        zoom: Crop around ``high_activation_box`` (with context) instead of the whole image.

    Returns:
        A note for the title: ``""``, or why the source image is missing.
    """
    self_map = torch.tensor(row["self_similarity_map"], dtype=torch.float32)  # (H_f, W_f)
    if image is None:
        ax.imshow(self_map.numpy(), cmap=HEATMAP_CMAP, interpolation="bicubic")
        h, w = row["feature_hw"]
        draw_box(ax, (w, h, w + 1, h + 1))
        return "(source image not found:\nsimilarity map only)"
    display = to_display(image, mean, std)  # (H, W, 3)
    heat = upsample_maps(self_map, display.shape[:2]).numpy()  # (H, W)
    blended = blend_heatmap(display, heat)
    box = row["high_activation_box"]
    shown, offset = crop(blended, box) if zoom else (blended, (0, 0))
    ax.imshow(shown, interpolation="lanczos")
    draw_box(ax, box, offset=offset)
    return ""


def render_gallery(
    model: Any,
    sources: Any = None,
    *,
    path: str | Path | None = None,
    zoom: bool = False,
    classes: Sequence[int] | None = None,
    dpi: int = 100,
) -> Figure:
    """Every prototype of a pushed model, one row per prototype class (a lesion head: per lesion).

    Each tile is the prototype's source image (or, with ``zoom``, a crop around its
    ``high_activation_box``) with its self-activation blended over the anatomy and the top-5% box
    outlined; its title gives the prototype index, class and source image id. The model's intended
    use (:func:`protozoo.intended_use.intended_use`), where known, is a banner above the rows.

    Args:
        model: A model with ``provenance`` (after :func:`protozoo.push.push_prototypes`).
        sources: Where to fetch the source images (see :func:`find_sources`).
        path: Save the figure here as PNG as well.
        zoom: Show crops around the boxes instead of whole images with the box drawn.
        classes: Only these prototype classes' rows (a large model's full gallery is too big for one image).
        dpi: Resolution of the saved PNG.

    Returns:
        The figure: one axis per prototype shown.

    Raises:
        ValueError: The model has not been pushed, so its prototypes are no image patches.
    """
    if model.provenance is None:
        raise ValueError(
            "the model has no prototype provenance: push it first (protozoo.push.push_prototypes) "
            "so that every prototype is a training patch that can be shown"
        )
    config = resolve_data_config(model)
    family = family_of(model)
    names = family.class_names(model)  # the prototype classes: a lesion head's lesions, else the classes
    prototype_class = model.prototype_class.tolist()
    rows = list(range(len(names))) if classes is None else list(classes)
    members = {c: [p for p, pc in enumerate(prototype_class) if pc == c] for c in rows}
    columns = max(1, max(len(m) for m in members.values()))
    images = find_sources(sources, {model.provenance[p]["image_id"] for m in members.values() for p in m}, family)

    tile_h = GALLERY_TILE_INCHES + GALLERY_TITLE_INCHES
    label_lines = max(wrap_name(names[c], LABEL_CHARS).count("\n") + 1 for c in rows)
    label_inches = GALLERY_LABEL_INCHES + 0.2 * (label_lines - 1)
    width = label_inches + columns * GALLERY_TILE_INCHES
    use = intended_use(model)
    banner = banner_lines(use, max(30, round(width * 12))) if use else []
    top = len(banner) * BANNER_LINE_INCHES
    height = top + len(rows) * tile_h
    fig = Figure(figsize=(width, height), dpi=dpi)
    for i, line in enumerate(banner):  # the model's intended use above every gallery (a zoo model is not clinical)
        fig.text(
            0.5,
            1 - (i + 0.5) * BANNER_LINE_INCHES / height,
            line,
            ha="center",
            va="center",
            fontsize=FONT_SIZE,
            fontweight="bold",
            color="white",
            bbox={"facecolor": BANNER_COLOR, "edgecolor": "none", "pad": 2},
        )
    grid = fig.add_gridspec(
        len(rows),
        columns,
        left=label_inches / width,
        right=0.99,
        bottom=0.01,
        top=1 - (top + GALLERY_TITLE_INCHES) / height,
        wspace=0.05,
        hspace=GALLERY_TITLE_INCHES / GALLERY_TILE_INCHES,
    )
    for r, c in enumerate(rows):
        for col, p in enumerate(members[c]):
            ax = fig.add_subplot(grid[r, col])
            row = model.provenance[p]
            note = draw_prototype(
                ax, row, images.get(str(row["image_id"])), mean=config["mean"], std=config["std"], zoom=zoom
            )
            # the row's label names the class; the tile its prototype and source (a long name would overlap)
            title = f"p{p}\n{short_id(row['image_id'])}" + (f"\n{note}" if note else "")
            ax.set_title(title, fontsize=FONT_SIZE)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(wrap_name(names[c], LABEL_CHARS), fontsize=FONT_SIZE + 2, fontweight="bold")
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
