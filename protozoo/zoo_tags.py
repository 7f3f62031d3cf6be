"""The zoo's trained models: one declaration per ``arch.tag`` (timm's ``generate_default_cfgs`` is the model).

A tag names weights, never another architecture. Each row declares

- ``model_args``: the architecture arguments the tag's weights were trained with.
  ``create_model("arch.tag")`` builds exactly these, ``load("arch.tag")`` loads the weights into
  them, and ``examples/build_zoo_model.py`` trains with them. Arguments not listed take the
  family's defaults (``arch`` and ``backbone`` come from the architecture).
- the pretrained configuration: ``input_size`` (``examples/build_zoo_model.py`` trains at this
  size), ``label_names``, ``description``, ``license`` and, where training changed them,
  ``crop_mode``/``crop_pct``/``interpolation``; mean and std follow from the input channels
  (ImageNet statistics, averaged for one channel), the paper from the family.
- ``hf_hub_id``: the Hugging Face Hub repo that holds the same files as ``weights/<arch.tag>/``
  (see :func:`protozoo.hub.locate_weights` for the order weights are looked for in).

To change a zoo model, edit its row and rebuild it (``python examples/build_zoo_model.py NAME``);
``tests/test_zoo_ship_tags.py`` checks every row against its weights' ``config.json``.
"""

from __future__ import annotations

from typing import Any

#: The Hub organisation the zoo's weights are uploaded to (``protozoo.hub.push_to_hub``).
HF_ORG = "protozoo"

MAMMO_CLASSES = ("normal", "benign", "malignant")
PARTS_CLASSES = (
    "blue_crown+white_throat+short-red_beak",
    "blue_crown+long-black_beak+yellow-ring_eye",
    "yellow_belly+white-ring_eye",
    "yellow_throat+black-streaked_belly",
)
FMNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FUNDUS_LESIONS = ("drusen", "haemorrhage", "hard_exudate", "geographic_atrophy", "neovascular_scar")

# name -> declaration. Keep one row per tag, its arguments in plain literals. The multi-view row
# describes weights trained before the letterbox fit (#18): a rebuild now fits those images with
# crop_mode="border", crop_pct=1.0, and its row must then say so (the build names it).
TAGS: dict[str, dict[str, Any]] = {
    "protopnet_efficientnet_lite0.synth_parts": dict(
        model_args=dict(
            num_classes=4,
            in_chans=3,
            prototypes_per_class=3,
            prototype_dim=32,
            feature_stage=2,  # stride 8: 12 x 12 cells at 96 px
            add_on="bottleneck",
            add_on_norm=True,
            similarity="log",
            incorrect_class_connection=-0.5,
            input_blur=1.0,
        ),
        input_size=(3, 96, 96),
        label_names=PARTS_CLASSES,
        description="ProtoPNet on synthetic CUB-like birds (4 classes, 96 px); synthetic data only, "
        "not for clinical use",
    ),
    "braix_protopnet_pp_efficientnet_lite0.synth_mammo": dict(
        model_args=dict(
            num_classes=3,
            in_chans=1,
            prototypes_per_class=5,
            prototype_dim=32,
            feature_stage=3,
            add_on="bottleneck",
            add_on_norm=True,
            similarity="log",
            incorrect_class_connection=-0.5,
            global_dropout=0.0,
            foreground_only=True,
        ),
        input_size=(1, 128, 128),
        crop_mode="border",  # the letterbox: a mammogram's whole field of view
        crop_pct=1.0,
        label_names=MAMMO_CLASSES,
        description="BRAIxProtoPNet++ on synthetic mammograms (normal / benign / malignant, 128 px); "
        "not for clinical use",
    ),
    "protopnet_multiview_efficientnet_lite0.synth_mammo": dict(
        model_args=dict(
            num_classes=3,
            in_chans=1,
            prototypes_per_class=3,
            prototype_dim=32,
            feature_stage=3,
            add_on="bottleneck",
            similarity="log",
            incorrect_class_connection=-0.5,
            attention_dim=64,
            projection_dim=256,
            foreground_only=True,
        ),
        input_size=(1, 96, 96),
        crop_mode="border",  # the letterbox: a mammogram's whole field of view
        crop_pct=1.0,
        label_names=MAMMO_CLASSES,
        description="Multi-view CC/MLO ProtoPNet on synthetic mammogram pairs (96 px); not for clinical use",
    ),
    "protopnet_lesion_efficientnet_lite0.synth_fundus": dict(
        model_args=dict(
            num_classes=2,
            in_chans=3,
            prototypes_per_class=3,
            prototype_dim=32,
            feature_stage=3,
            add_on="bottleneck",
            add_on_norm=True,
            similarity="log",
            incorrect_class_connection=0.0,
            lesion_prior=0.1,
            lesion_names=list(FUNDUS_LESIONS),
        ),
        input_size=(3, 192, 192),
        crop_mode="border",  # the letterbox: a fundus photograph's whole field of view
        crop_pct=1.0,
        label_names=("non-AMD", "AMD"),
        description="Lesion-linked ProtoPNet on synthetic colour fundus photographs (5 lesion types -> "
        "non-AMD / AMD, 192 px); not for clinical use",
    ),
    "protopnet_efficientnet_lite0.fmnist": dict(
        model_args=dict(
            num_classes=10,
            in_chans=1,
            prototypes_per_class=3,
            prototype_dim=32,
            feature_stage=2,
            add_on="bottleneck",
            similarity="log",
            incorrect_class_connection=-0.5,
        ),
        input_size=(1, 32, 32),
        label_names=FMNIST_CLASSES,
        description="ProtoPNet on Fashion-MNIST (10 classes of real 28x28 clothing photos, upsampled to 32 px); "
        "not for clinical use",
    ),
}

#: Defaults of every row (a row's own keys win).
DEFAULTS: dict[str, Any] = dict(license="Apache-2.0")
