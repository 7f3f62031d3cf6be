"""Pretrained configurations: where a model's weights live and how its inputs look.

Kept apart from architecture arguments (as timm's ``PretrainedCfg`` is): the same architecture can
have several weight tags (``protopnet_resnet18.synth_parts``, ``protopnet_resnet18.fmnist``), each
with its own input size, normalisation, label names, license and paper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

#: The ImageNet statistics: the one copy (``protozoo.data.transforms`` reads them from here).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


# The channel rule, for statistics and for pixels alike: channels that do not match the model's
# become their mean, repeated to its channel count (gray -> RGB replicates; RGB -> gray averages).
# timm folds a pretrained RGB stem onto one channel by summing it over RGB, which is the RGB model
# fed the gray image three times: so the gray image's mean and std are the mean of the RGB ones.
def channel_stats(stats: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """Per-channel ``stats`` (mean or std) for ``channels`` channels, by the channel rule above."""
    stats = tuple(float(v) for v in stats)
    return stats if len(stats) == channels else (sum(stats) / len(stats),) * channels


def adapt_image_channels(image: Tensor, channels: int) -> Tensor:
    """A (C, H, W) image with ``channels`` channels, by the channel rule (gray replicated, RGB averaged)."""
    if image.shape[0] == channels:
        return image
    return image.mean(0, keepdim=True).expand(channels, -1, -1)  # (channels, H, W)


@dataclass(frozen=True)
class PretrainedCfg:
    """Everything about one set of weights of one architecture, and nothing about its shape.

    Attributes:
        architecture: Registered architecture name (``protopnet_resnet18``); set by the registry.
        tag: Weight tag; ``""`` for the untrained default configuration.
        weights_dir: Folder name under the zoo's ``weights/`` directory holding ``config.json`` and
            ``model.safetensors``.
        hf_hub_id: Hugging Face Hub repo id (``org/repo``) holding the same files.
        file: An explicit local folder or ``.safetensors`` file.
        input_size: ``(C, H, W)`` the weights expect.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation std.
        interpolation: Resize interpolation used in training.
        crop_pct: Centre-crop fraction used at evaluation.
        crop_mode: How an image is fitted to ``input_size``, timm's values: ``"center"`` (resize the
            shorter side, centre crop), ``"squash"`` (aspect not kept) or ``"border"`` (the letterbox:
            aspect kept, padded; with ``crop_pct=1`` the whole field of view, as mammograms and fundus
            photographs are trained). See :data:`protozoo.data.transforms.CROP_MODES`.
        label_names: Class names, in logit order.
        license: License of the weights.
        paper: The paper the architecture or recipe follows.
        description: One line on what the weights were trained on.
    """

    architecture: str = ""
    tag: str = ""
    weights_dir: str | None = None
    hf_hub_id: str | None = None
    file: str | None = None
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop_mode: str = "center"
    label_names: tuple[str, ...] | None = None
    license: str | None = None
    paper: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The full ``arch.tag`` name (just ``arch`` for the untrained default)."""
        return f"{self.architecture}.{self.tag}" if self.tag else self.architecture

    @property
    def has_weights(self) -> bool:
        """Whether this configuration points at trained weights."""
        return any((self.weights_dir, self.hf_hub_id, self.file))

    @property
    def in_chans(self) -> int:
        return self.input_size[0]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainedCfg:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so newer files still load."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("input_size", "mean", "std", "label_names"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> PretrainedCfg:
        return replace(self, **changes)


def adapt_channels(cfg: PretrainedCfg, in_chans: int) -> PretrainedCfg:
    """The config with ``input_size``, ``mean`` and ``std`` for ``in_chans`` channels (:func:`channel_stats`)."""
    if cfg.in_chans == in_chans:
        return cfg
    return cfg.replace(
        input_size=(in_chans, *cfg.input_size[1:]),
        mean=channel_stats(cfg.mean, in_chans),
        std=channel_stats(cfg.std, in_chans),
    )
