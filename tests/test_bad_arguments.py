"""Out-of-range arguments and unreadable inputs raise an error that names them; safe inputs are converted.

A table per kind of case (issue #15): inputs of other dtypes, explain's image / class / top_k,
evaluator parameters, non-finite scores, a dataset of other classes than the model's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import protozoo
from protozoo.data import build_transforms, load_dataset, resolve_data_config
from protozoo.evaluate import (
    classification,
    classification_metrics,
    consistency,
    localization,
    prototype_stats,
    stability,
)
from protozoo.evaluate.localization import per_image_localization

SIZE = 64


@pytest.fixture(scope="module")
def model():
    m = protozoo.create_model(
        "protopnet_resnet18",
        backbone="test_resnet",
        feature_stage=-2,
        num_classes=3,
        prototypes_per_class=1,
        prototype_dim=8,
    ).eval()
    m.pretrained_cfg = m.pretrained_cfg.replace(input_size=(3, SIZE, SIZE))
    return m


@pytest.fixture(scope="module")
def parts(model):
    data = load_dataset("synthetic-parts", "test", image_size=SIZE, num_samples=6, num_classes=3)
    data.transform = build_transforms(resolve_data_config(model), train=False)
    return data


# ----------------------------------------------------------------------------- input dtypes


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_precisions_are_converted(model, dtype):
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x.to(dtype)).logits, model(x.to(dtype).float()).logits)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_and_bool_images_are_refused_with_the_fix(model, dtype):
    with pytest.raises(ValueError, match=rf"got a {dtype} tensor; scale the pixels to \[0, 1\].*build_transforms"):
        model(torch.ones(1, 3, SIZE, SIZE).to(dtype))


# ----------------------------------------------------------------------------- explain


@pytest.mark.parametrize(
    "image, message",
    [
        (None, r"no image \(None\)"),
        (Image.new("RGB", (SIZE, SIZE)), r"got a PIL\.Image.*read_image"),
        (np.zeros((SIZE, SIZE, 3), dtype=np.uint8), r"got a numpy\.ndarray of dtype uint8"),
        ([[0.0] * 3], r"got a builtins\.list"),
        (torch.rand(SIZE, SIZE), r"one image \(C, H, W\) or \(1, C, H, W\), got shape \(64, 64\)"),
    ],
)
def test_explain_names_what_it_cannot_read(model, image, message):
    with pytest.raises(ValueError, match=message):
        protozoo.explain(model, image)


def test_explain_reads_a_float_numpy_array(model):
    x = torch.rand(3, SIZE, SIZE)
    assert protozoo.explain(model, x.numpy()).logit == pytest.approx(protozoo.explain(model, x).logit)


@pytest.mark.parametrize("class_idx", [-1, 3, 99, 1.5, True, "0"])
def test_explain_refuses_a_class_the_model_does_not_have(model, class_idx):
    with pytest.raises(ValueError, match=r"class_idx must be a class index 0\.\.2"):
        protozoo.explain(model, torch.rand(3, SIZE, SIZE), class_idx=class_idx)


@pytest.mark.parametrize("top_k", [0, -1, 2.5, False])
def test_explain_refuses_a_bad_top_k(model, top_k):
    with pytest.raises(ValueError, match="top_k must be a positive whole number"):
        protozoo.explain(model, torch.rand(3, SIZE, SIZE), top_k=top_k)


def test_explain_accepts_numpy_integers_as_classes(model):
    assert protozoo.explain(model, torch.rand(3, SIZE, SIZE), class_idx=np.int64(2)).class_idx == 2


# ----------------------------------------------------------------------------- evaluator parameters


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, d: consistency(m, d, mu=5), r"mu must be a number in \(0, 1\]"),
        (lambda m, d: consistency(m, d, mu=-1), r"mu must be a number in \(0, 1\]"),
        (lambda m, d: consistency(m, d, mu=0), r"mu must be a number in \(0, 1\]"),
        (lambda m, d: consistency(m, d, half_size=0), "half_size must be a whole number >= 1"),
        (lambda m, d: consistency(m, d, half_size=-3), "half_size must be a whole number >= 1"),
        (lambda m, d: stability(m, d, noise_std=-1), r"noise_std must be a number in \(0, inf\)"),
        (lambda m, d: stability(m, d, noise_std=0), r"noise_std must be a number in \(0, inf\)"),
        (lambda m, d: stability(m, d, noise_clip=0), r"noise_clip must be a number in \(0, inf\]"),
        (lambda m, d: classification(m, d, batch_size=0), "batch_size must be a whole number >= 1"),
        (lambda m, d: prototype_stats(m, d, k=0), "k must be a whole number >= 1"),
    ],
)
def test_evaluator_parameters_out_of_range_are_errors(model, parts, call, message):
    with pytest.raises(ValueError, match=message):
        call(model, parts)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"threshold": 2}, r"threshold must be a number in \[0, 1\]"),
        ({"threshold": float("nan")}, r"threshold must be a number in \[0, 1\]"),
        ({"top_fraction": 0}, r"top_fraction must be a number in \(0, 1\]"),
    ],
)
def test_localization_parameters_out_of_range_are_errors(options, message):
    with pytest.raises(ValueError, match=message):
        per_image_localization(torch.rand(2, 8, 8), torch.ones(2, 1, 8, 8), **options)


def test_non_finite_maps_are_not_scored():
    with pytest.raises(ValueError, match="NaN or Inf"):
        per_image_localization(torch.full((2, 8, 8), float("nan")), torch.ones(2, 1, 8, 8))


# ----------------------------------------------------------------------------- non-finite scores, wrong data


def test_metrics_on_nan_logits_raise_instead_of_scoring():
    logits = torch.full((6, 3), float("nan"))
    with pytest.raises(ValueError, match="6 of 6 rows of logits hold NaN or Inf"):
        classification_metrics(logits, torch.tensor([0, 1, 2, 0, 1, 2]))


def test_labels_outside_the_logits_are_an_error():
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        classification_metrics(torch.rand(3, 2), torch.tensor([0, 1, 2]))


def test_a_dataset_of_other_classes_is_refused_by_every_evaluator(model):
    other = load_dataset("synthetic-parts", "test", image_size=SIZE, num_samples=4, num_classes=4)
    other.transform = build_transforms(resolve_data_config(model), train=False)
    for evaluate in (classification, consistency, stability, prototype_stats):
        with pytest.raises(ValueError, match="the dataset gives num_classes=4 but the model has num_classes=3"):
            evaluate(model, other)


def test_a_lesion_model_refuses_data_with_other_lesions():
    lesion = protozoo.create_model(
        "protopnet_lesion_resnet18",
        backbone="test_resnet",
        feature_stage=-2,
        prototypes_per_class=1,
        prototype_dim=8,
        lesion_names=["drusen", "scar"],
    )
    data = load_dataset("synthetic-fundus", "test", image_size=SIZE, num_samples=4)
    with pytest.raises(ValueError, match="the dataset gives lesion_names="):
        localization(lesion, data)


# ----------------------------------------------------------------------------- files and folders


def test_image_folder_problems_are_named(tmp_path):
    from protozoo.data import load_dataset as load
    from protozoo.data.errors import DatasetLayoutError

    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cats" / "a.png")
    with pytest.raises(DatasetLayoutError, match=r"class folder\(s\) \[.*dogs'\] hold no image"):
        load(f"folder:{tmp_path}", "train")
    with pytest.raises(DatasetLayoutError, match="is a file, not a folder"):
        load(f"folder:{tmp_path / 'cats' / 'a.png'}", "train")
    with pytest.raises(ValueError, match="unknown option 'img_size'.*did you mean 'image_size'"):
        load(f"folder:{tmp_path}", "train", img_size=8)


def test_a_float_tiff_beyond_one_is_scaled_with_a_warning_not_clipped(tmp_path):
    from protozoo.data import read_image

    path = tmp_path / "scan.tif"
    Image.fromarray(np.linspace(0, 1000, 64, dtype=np.float32).reshape(8, 8), mode="F").save(path)
    with pytest.warns(UserWarning, match=r"values lie in \[0, 1000\], outside \[0, 1\]"):
        image = read_image(path)
    assert image.max() == 1 and image.min() == 0 and len(image.unique()) == 64  # not clipped to white


def test_the_explain_cli_refuses_an_image_smaller_than_a_feature_cell(tmp_path, model, capsys):
    from protozoo.cli import main

    folder = model.save_pretrained(tmp_path / "model")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    assert main(["explain", "--model", str(folder), str(tmp_path / "dot.png"), "--out", str(tmp_path / "out")]) == 2
    assert "is 1x1 px, smaller than one feature cell" in capsys.readouterr().err


@pytest.mark.parametrize(
    "model_name, spec, message",
    [
        (
            "protopnet_lesion_resnet18",
            "synthetic-parts",
            "SyntheticParts has no lesion_names: the lesion head trains on data with lesion labels",
        ),
        (
            "protopnet_multiview_resnet18",
            "synthetic-parts",
            r"multi-view \(CC/MLO\) ProtoPNet models train on items with \['views', 'label'\]",
        ),
    ],
)
def test_a_head_trained_on_data_without_what_it_needs_is_told_so(model_name, spec, message):
    from protozoo.train.session import prepare_run

    with pytest.raises(ValueError, match=message):
        prepare_run(
            model_name,
            spec,
            image_size=SIZE,
            num_samples=4,
            backbone="test_resnet",
            feature_stage=-2,
            prototypes_per_class=1,
            prototype_dim=8,
        )
