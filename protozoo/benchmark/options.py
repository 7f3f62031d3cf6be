"""What one benchmark is: backbones, data, methods, initialisations, budget; and the presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

METHODS = ("gradcam", "gradcam++", "scorecam", "prototypes")
INITS = ("imagenet", "random")

# ``--preset quick``: three small backbones at 64 px, a few hundred images, a few epochs, in about
# five minutes on two CPU cores (README's table). EfficientNet-Lite0 has ImageNet weights offline.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "backbones": ("resnet18", "efficientnet_lite0", "mobilenetv2"),
        "data": "synthetic-fundus",
        # Lesions 3x their default radius: 9 % of a 64 px image instead of 1 %, so that maps of
        # 2x2 to 4x4 cells can overlap them at all (the datasets' documented knob).
        "data_options": {"lesion_size": 3.0},
        # Score-CAM runs one forward per feature channel per image (about 3 s per 64 px image for
        # ResNet-18's 512 channels on two shared cores): add it with methods=... when there is time.
        "methods": ("gradcam", "gradcam++", "prototypes"),
        "inits": ("imagenet", "random"),
        "epochs": 4,
        "last_layer_epochs": 1,
        "image_size": 64,
        "train_samples": 192,
        "test_samples": 48,
        "faithfulness_samples": 8,
        "perturbations": 4,
        "batch_size": 32,
    },
}


@dataclass
class BenchmarkOptions:
    """The benchmark's definition, stored in every row of ``results.json``.

    Attributes:
        backbones: Backbone names of registered ProtoPNet models (``resnet18`` for
            ``protopnet_resnet18``); the plain classifier is the same timm backbone.
        data: ``synthetic-fundus``, ``synthetic-mammo``, ``synthetic-parts`` or ``folder:PATH``
            (items with a ``mask``).
        methods: Of :data:`METHODS`; Grad-CAM, Grad-CAM++ and Score-CAM explain the plain
            classifier, ``prototypes`` the ProtoPNet (its most activated own-class prototype).
        inits: ``imagenet`` (an offline ImageNet backbone: the timm cache, the EfficientNet-Lite0
            package or ``backbone_weights``) and/or ``random``.
        freeze_stages: The first K of timm's feature stages (``feature_info``) stay at their
            initial weights in both models.
        epochs: Training epochs of both models (ProtoPNet: warm + joint, then a push and
            ``last_layer_epochs``).
        last_layer_epochs: ProtoPNet's last-layer epochs after the push.
        image_size: Input side in pixels.
        data_options: Keyword options of the dataset class for every split (``{"lesion_size": 3.0}``).
        shortcut: Probability of the class-coding tag on the training images (synthetic data).
        train_samples: Training images of a synthetic dataset.
        test_samples: Test images of a synthetic dataset (every one of a folder's test split).
        faithfulness_samples: Test images the captum infidelity and max-sensitivity run on (0: none).
        perturbations: Perturbations per image of infidelity and max-sensitivity.
        batch_size: Training and scoring batch.
        seed: Seed of the data, the initialisation and the training order.
        shortcut_figures: Score the tag figures (on the test images with their class's tag drawn);
            None: when ``shortcut`` > 0 (set True at p = 0 for the baseline).
        threshold: On the min-max normalised map, for IoU, Dice and the explanation F1.
        backbone_weights: ``{backbone: weight file}`` for ``imagenet`` rows without another source.
    """

    backbones: tuple[str, ...] = ("resnet18",)
    data: str = "synthetic-fundus"
    data_options: dict[str, Any] = field(default_factory=dict)
    methods: tuple[str, ...] = METHODS
    inits: tuple[str, ...] = ("random",)
    freeze_stages: int = 0
    epochs: int = 4
    last_layer_epochs: int = 1
    image_size: int = 64
    shortcut: float = 0.0
    train_samples: int = 192
    test_samples: int = 48
    faithfulness_samples: int = 8
    perturbations: int = 4
    batch_size: int = 32
    seed: int = 0
    shortcut_figures: bool | None = None
    threshold: float = 0.5
    backbone_weights: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.backbones, self.methods, self.inits = (tuple(v) for v in (self.backbones, self.methods, self.inits))
        _check_choices("methods", self.methods, METHODS)
        _check_choices("inits", self.inits, INITS)
        if not self.backbones:
            raise ValueError("backbones is empty: name at least one, e.g. backbones=('resnet18',)")
        for name in ("epochs", "image_size", "train_samples", "test_samples", "batch_size", "perturbations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("freeze_stages", "last_layer_epochs", "faithfulness_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not 0.0 <= float(self.shortcut) <= 1.0:
            raise ValueError(f"shortcut must be a probability in [0, 1], got {self.shortcut!r}")
        if (self.shortcut or self.shortcut_figures) and not self.data.startswith("synthetic-"):
            raise ValueError(f"shortcut needs a synthetic dataset (it draws the tag), not {self.data!r}")
        taken = sorted(set(self.data_options) & {"shortcut", "image_size", "seed", "num_samples", "transform"})
        if taken:
            raise ValueError(
                f"data_options {taken} are the benchmark's own options: use shortcut, image_size, seed, "
                "train_samples / test_samples instead"
            )
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")

    @classmethod
    def preset(cls, name: str, **changes: Any) -> BenchmarkOptions:
        """A preset's options, ``changes`` (not None) on top."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
        return cls(**(PRESETS[name] | {k: v for k, v in changes.items() if v is not None}))

    @property
    def scores_shortcut(self) -> bool:
        return bool(self.shortcut > 0 if self.shortcut_figures is None else self.shortcut_figures)

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def replace(self, **changes: Any) -> BenchmarkOptions:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown benchmark options {unknown}; known: {sorted(known)}")
        return replace(self, **changes)


def _check_choices(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise ValueError(f"{name} must be a non-empty list of {', '.join(allowed)}; got {', '.join(values) or 'none'}")
