"""Data config resolution (timm-style) and item-dict transforms that keep keypoints and masks aligned.

Keypoint convention: ``parts[k] = (x, y)`` in pixel-index units, integer = pixel centre, so an
image of width W spans x in [-0.5, W - 0.5). Every geometric step maps keypoints exactly as it
maps pixel centres; a keypoint that leaves the image keeps its coordinates but becomes
invisible in ``parts_visible``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from protozoo.pretrained import IMAGENET_MEAN, IMAGENET_STD, adapt_image_channels, channel_stats

Item = dict[str, Any]
#: How the eval geometry fits an image into ``input_size``: timm's ``crop_mode`` values, with
#: timm's meaning (``timm.data.create_transform``). ``"center"``: the shorter side scaled to
#: ``size / crop_pct``, centre crop (ImageNet's; cuts the long side of a non-square image).
#: ``"squash"``: each side scaled to ``size / crop_pct`` (aspect not kept), centre crop.
#: ``"border"``: the letterbox; the longer side scaled to ``size / crop_pct``, aspect kept, padded
#: (black) and centre-cropped to ``size``: with ``crop_pct=1`` the whole field of view is kept,
#: as a mammogram or fundus photograph needs (the pectoral muscle, the far breast edge).
CROP_MODES = ("center", "squash", "border")
# Pixel masks that move with the image (nearest resampling): lesion masks and the foreground.
MASK_KEYS = ("mask", "foreground")

DEFAULT_CONFIG: dict[str, Any] = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "crop_pct": 0.875,
    "crop_mode": "center",
}


def resolve_data_config(model_or_cfg: Any = None, **overrides: Any) -> dict[str, Any]:
    """Resolves ``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode`` like timm.

    Sources, lowest priority first: :data:`DEFAULT_CONFIG` (3x224x224, ImageNet mean / std,
    bicubic, crop_pct 0.875, crop_mode ``"center"``); ``model_or_cfg`` (a dict, or an object whose ``pretrained_cfg``
    attribute, or the object itself, has these keys / attributes); non-None ``overrides``.
    ``mean`` / ``std`` are adapted to the channel count by protozoo's one channel rule
    (:func:`protozoo.pretrained.channel_stats`: kept when they match, else their mean repeated).

    Args:
        model_or_cfg: Model, pretrained config (dataclass, any object or dict), or None.
        **overrides: Values for any of the keys above.

    Returns:
        Dict with the six keys (``crop_mode`` one of :data:`CROP_MODES`).
    """
    unknown = set(overrides) - set(DEFAULT_CONFIG)
    if unknown:
        raise TypeError(f"unknown data config keys {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
    source = getattr(model_or_cfg, "pretrained_cfg", model_or_cfg)
    config = dict(DEFAULT_CONFIG)
    for key in DEFAULT_CONFIG:
        value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
        if overrides.get(key) is not None:
            value = overrides[key]
        if value is not None:
            config[key] = value
    config["input_size"] = tuple(int(v) for v in config["input_size"])
    if config["crop_mode"] not in CROP_MODES:
        raise ValueError(
            f"crop_mode {config['crop_mode']!r} is not one of {CROP_MODES} (timm's crop modes; "
            "'border' is the letterbox that keeps a mammogram's whole field of view)"
        )
    if not 0 < float(config["crop_pct"]) <= 1:
        raise ValueError(f"crop_pct must lie in (0, 1], got {config['crop_pct']!r}")
    channels = config["input_size"][0]
    for key in ("mean", "std"):
        config[key] = channel_stats(config[key], channels)
    return config


@dataclass(frozen=True)
class AffineAug:
    """Parameters of the random affine step (about the image centre).

    Attributes:
        degrees: Rotation drawn from [-degrees, degrees].
        translate: Shift drawn from [-translate, translate] x the image size, per axis.
        scale: Zoom drawn from [scale[0], scale[1]].
    """

    degrees: float = 10.0
    translate: float = 0.05
    scale: tuple[float, float] = (0.95, 1.05)


class ItemTransform:
    """Callable over the item dict built by :func:`build_transforms` (see there).

    Items with ``views`` are transformed view by view (independent random draws); a top-level
    ``image`` next to ``views`` is transformed too.
    """

    def __init__(
        self,
        *,
        config: dict[str, Any],
        train: bool,
        hflip: float,
        crop_scale: tuple[float, float] | None,
        crop_ratio: tuple[float, float],
        affine: AffineAug | None,
        generator: torch.Generator | None,
    ) -> None:
        self.channels, self.height, self.width = config["input_size"]
        self.interpolation = InterpolationMode(config["interpolation"])
        self.mean = torch.tensor(config["mean"]).view(-1, 1, 1)  # (C, 1, 1)
        self.std = torch.tensor(config["std"]).view(-1, 1, 1)  # (C, 1, 1)
        self.crop_pct = float(config["crop_pct"])
        self.crop_mode = config["crop_mode"]
        self.train = train
        self.hflip = hflip
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        self.affine = affine
        self.generator = generator

    def __repr__(self) -> str:
        return (
            f"ItemTransform(size=({self.channels}, {self.height}, {self.width}), crop_mode={self.crop_mode!r}, "
            f"crop_pct={self.crop_pct}, train={self.train}, "
            f"hflip={self.hflip}, crop_scale={self.crop_scale}, affine={self.affine})"
        )

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def __call__(self, item: Item) -> Item:
        if "views" in item:
            views = {name: self(view) for name, view in item["views"].items()}
            rest = {key: value for key, value in item.items() if key != "views"}
            return {**(self(rest) if "image" in rest else rest), "views": views}
        item = dict(item)
        _, h, w = item["image"].shape
        box = self._random_crop(h, w) if self.train and self.crop_scale else self._eval_box(h, w)
        if self.crop_mode == "border":
            letterbox(item, box, (self.height, self.width), self.interpolation, crop_pct=self.crop_pct)
        else:
            self._resized_crop(item, *box)
        if self.train and self.hflip > 0 and self._uniform(0, 1) < self.hflip:
            self._flip(item)
        if self.train and self.affine is not None:
            self._random_affine(item, self.affine)
        image = adapt_image_channels(item["image"].clamp(0, 1), self.channels)
        item["image"] = (image - self.mean) / self.std  # (C, H, W)
        return item

    def visible_fraction(self, h: int, w: int) -> tuple[float, float]:
        """Fractions of an ``h`` x ``w`` image's rows and columns the eval geometry keeps.

        ``(1.0, 1.0)`` for the letterbox at ``crop_pct=1``; about ``(0.48, 0.88)`` for timm's
        centre crop at 0.875 on a 4736 x 2624 mammogram (the pectoral region and lower breast cut).
        """
        if self.crop_mode == "border":
            scale_h, scale_w = math.floor(self.height / self.crop_pct), math.floor(self.width / self.crop_pct)
            ratio = max(h / scale_h, w / scale_w)
            return min(1.0, self.height / round(h / ratio)), min(1.0, self.width / round(w / ratio))
        _, _, ch, cw = self._eval_box(h, w)
        return ch / h, cw / w

    def _eval_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Box of the input the eval geometry reads (``border``: all of it; the letterbox crops itself)."""
        if self.crop_mode == "border":
            return 0, 0, h, w
        if self.crop_mode == "squash":
            ch, cw = min(h, round(h * self.crop_pct)), min(w, round(w * self.crop_pct))
            return (h - ch) // 2, (w - cw) // 2, ch, cw
        return self._center_crop(h, w)

    def _center_crop(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Box of the input that timm's eval resize-then-centre-crop keeps."""
        s = max(self.height / (self.crop_pct * h), self.width / (self.crop_pct * w))
        ch, cw = min(h, round(self.height / s)), min(w, round(self.width / s))
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def _random_crop(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Random box with area fraction in ``crop_scale`` and log-uniform aspect ratio in ``crop_ratio``."""
        log_ratio = (math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]))
        for _ in range(10):
            area = h * w * self._uniform(*self.crop_scale)
            ratio = math.exp(self._uniform(*log_ratio))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                return round(self._uniform(0, h - ch)), round(self._uniform(0, w - cw)), ch, cw
        return self._eval_box(h, w)

    def _resized_crop(self, item: Item, top: int, left: int, ch: int, cw: int) -> None:
        resized_crop(item, (top, left, ch, cw), (self.height, self.width), self.interpolation)

    def _flip(self, item: Item) -> None:
        item["image"] = item["image"].flip(-1)
        for key in MASK_KEYS:
            if key in item:
                item[key] = item[key].flip(-1)
        if "parts" in item:
            parts = item["parts"].clone()
            parts[:, 0] = self.width - 1 - parts[:, 0]
            self._set_parts(item, parts)

    def _random_affine(self, item: Item, aug: AffineAug) -> None:
        """Rotation / scale about the centre, then shift; one warp for image, mask and parts."""
        angle = math.radians(self._uniform(-aug.degrees, aug.degrees))
        scale = self._uniform(*aug.scale)
        tx = self._uniform(-aug.translate, aug.translate) * self.width
        ty = self._uniform(-aug.translate, aug.translate) * self.height
        cx, cy = (self.width - 1) / 2, (self.height - 1) / 2
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        # Forward map in pixel coordinates: p' = A (p - c) + c + t.
        forward = torch.tensor(
            [[cos, -sin, cx + tx - cos * cx + sin * cy], [sin, cos, cy + ty - sin * cx - cos * cy], [0.0, 0.0, 1.0]]
        )
        # Pixel index -> normalised coordinate (align_corners=False): n = (2p + 1) / size - 1.
        to_norm = torch.tensor(
            [[2 / self.width, 0, 1 / self.width - 1], [0, 2 / self.height, 1 / self.height - 1], [0, 0, 1.0]]
        )
        theta = (to_norm @ torch.linalg.inv(forward) @ torch.linalg.inv(to_norm))[:2]  # (2, 3) output -> input
        grid = F.affine_grid(theta[None], [1, 1, self.height, self.width], align_corners=False)  # (1, H, W, 2)
        image = item["image"]
        item["image"] = F.grid_sample(image[None].float(), grid, mode="bilinear", align_corners=False)[0]
        for key in MASK_KEYS:
            if key in item:
                mask = item[key]
                out = F.grid_sample(mask[None].float(), grid, mode="nearest", align_corners=False)[0]
                item[key] = out.to(mask.dtype)  # (L, H, W)
        if "parts" in item:
            parts = item["parts"].float()  # (K, 2)
            self._set_parts(item, parts @ forward[:2, :2].T + forward[:2, 2])

    def _set_parts(self, item: Item, parts: torch.Tensor) -> None:
        set_parts(item, parts, (self.height, self.width))


def set_parts(item: Item, parts: torch.Tensor, size: tuple[int, int]) -> None:
    """Stores moved keypoints in ``item``; those now outside an image of ``size`` (H, W) become invisible."""
    height, width = size
    x, y = parts[:, 0], parts[:, 1]
    inside = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)
    item["parts"] = parts  # (K, 2)
    if "parts_visible" in item:
        item["parts_visible"] = item["parts_visible"] & inside  # (K,)


def resized_crop(
    item: Item, box: tuple[int, int, int, int], size: tuple[int, int], interpolation: InterpolationMode
) -> None:
    """Crops ``box`` (top, left, height, width) of the item and resizes it to ``size`` (H, W), in place.

    ``image`` with ``interpolation`` (antialiased), ``mask`` nearest, ``parts`` mapped as pixel
    centres (see the module docstring). The one resampling step of the transforms and of
    datasets' ``image_size``.
    """
    top, left, ch, cw = box
    height, width = size
    item["image"] = TF.resized_crop(item["image"], top, left, ch, cw, [height, width], interpolation, antialias=True)
    for key in MASK_KEYS:
        if key in item:
            mask = item[key]
            out = TF.resized_crop(mask.float(), top, left, ch, cw, [height, width], InterpolationMode.NEAREST)
            item[key] = out.to(mask.dtype)  # (L, H, W)
    if "parts" in item:
        scale = torch.tensor([width / cw, height / ch])
        offset = torch.tensor([left, top], dtype=torch.float32)
        set_parts(item, (item["parts"].float() - offset + 0.5) * scale - 0.5, size)


def letterbox(
    item: Item,
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    interpolation: InterpolationMode,
    *,
    crop_pct: float = 1.0,
) -> None:
    """Fits ``box`` (top, left, height, width) of the item into ``size`` (H, W) keeping its aspect, in place.

    timm's ``crop_mode="border"`` (``ResizeKeepRatio(size / crop_pct, longest=1)`` then
    ``CenterCropOrPad(size)``), done on the image, its masks and its keypoints alike: the box's
    longer side becomes ``size / crop_pct``, the shorter one follows, and the result is padded
    with zeros (black: a mammogram's or fundus photograph's background; masks: nothing there)
    and centre-cropped to ``size``. With ``crop_pct=1`` every pixel row and column of the box
    is in the output.
    """
    from timm.data.transforms import center_crop_or_pad

    _, _, ch, cw = box
    height, width = size
    scale_h, scale_w = math.floor(height / crop_pct), math.floor(width / crop_pct)
    ratio = max(ch / scale_h, cw / scale_w)
    fitted = max(1, round(ch / ratio)), max(1, round(cw / ratio))  # (h, w) aspect kept
    resized_crop(item, box, fitted, interpolation)
    item["image"] = center_crop_or_pad(item["image"], [height, width], fill=0)  # (C, H, W)
    for key in MASK_KEYS:
        if key in item:
            mask = item[key]
            item[key] = center_crop_or_pad(mask.float(), [height, width], fill=0).to(mask.dtype)  # (L, H, W)
    if "parts" in item:
        # The offset center_crop_or_pad applies: pad (target - n) // 2 before, or crop round((n - target) / 2).
        shift = [(t - n) // 2 if n < t else -int(round((n - t) / 2.0)) for n, t in zip(fitted[::-1], (width, height))]
        set_parts(item, item["parts"].float() + torch.tensor(shift, dtype=torch.float32), size)


def resize_item(
    item: Item,
    size: tuple[int, int],
    interpolation: str = DEFAULT_CONFIG["interpolation"],
    *,
    keep_aspect: bool = False,
) -> Item:
    """A copy of the item with its whole image resized to ``size`` (H, W), mask and parts following.

    By default the aspect ratio is not kept (as ProtoPNet resizes CUB crops to 224 x 224); with
    ``keep_aspect`` the image is letterboxed (:func:`letterbox`, whole image, black padding),
    as a dataset of mammograms or fundus photographs does. What a model then sees is decided
    by the transform.
    """
    item = dict(item)
    _, h, w = item["image"].shape
    fit = letterbox if keep_aspect else resized_crop
    fit(item, (0, 0, h, w), size, InterpolationMode(interpolation))
    return item


def build_transforms(
    data_config: Mapping[str, Any],
    train: bool,
    *,
    hflip: float = 0.5,
    crop_scale: tuple[float, float] | None = (0.5, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    affine: AffineAug | None = AffineAug(),
    generator: torch.Generator | None = None,
) -> ItemTransform:
    """Builds the item transform: geometry, channel adaptation, normalisation.

    Eval: the config's ``crop_mode`` with timm's meaning (:data:`CROP_MODES`): ``"center"``,
    timm's resize-then-centre-crop (the shorter side scaled so the target is a ``crop_pct``
    crop), done as one resized crop; ``"squash"``, the central ``crop_pct`` of each side resized;
    ``"border"``, the letterbox (:func:`letterbox`: aspect kept, black padding; with
    ``crop_pct=1`` the whole image). Train: a random box (area fraction ``crop_scale``, aspect
    ``crop_ratio``; ``crop_scale=None`` uses the eval geometry) resized (letterboxed with
    ``"border"``), a horizontal
    flip with probability ``hflip``, and a random affine (``affine``; None disables). Then
    channels adapted to ``input_size`` by the one channel rule (gray replicated, RGB averaged:
    :func:`protozoo.pretrained.adapt_image_channels`, as ``mean`` / ``std`` are), and
    ``(x - mean) / std``. ``image`` uses the config's interpolation (antialiased),
    ``mask`` nearest; ``parts`` / ``parts_visible`` follow (see the module docstring).

    Args:
        data_config: Output of :func:`resolve_data_config`.
        train: Random augmentation (True) or deterministic eval transform.
        hflip: Probability of a horizontal flip (train).
        crop_scale: Area fraction range of the random resized crop, or None.
        crop_ratio: Aspect-ratio range of the random resized crop.
        affine: Random affine parameters, or None.
        generator: Random generator (default: torch's global one, seeded per DataLoader worker).

    Returns:
        A callable ``item -> item``.
    """
    return ItemTransform(
        config=resolve_data_config(dict(data_config)),
        train=train,
        hflip=hflip,
        crop_scale=crop_scale,
        crop_ratio=crop_ratio,
        affine=affine,
        generator=generator,
    )
