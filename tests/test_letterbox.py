"""Issue #18: mammograms and fundus photographs keep their whole field of view (the letterbox,
timm's ``crop_mode="border"``), in training, evaluation and ``protozoo explain`` alike."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import protozoo.cli
import protozoo.cli.explain as explain_cli
from protozoo.data import build_transforms, resolve_data_config
from protozoo.data.transforms import letterbox, resize_item
from protozoo.train.session import prepare_run

sys.path.insert(0, str(Path(__file__).parent / "data"))
from fixtures import dot_image, write_dicom  # noqa: E402

TINY = dict(backbone="test_resnet", feature_stage=-2, prototypes_per_class=1, prototype_dim=8)
# The full-field DICOM of the issue: 4736 rows x 2624 columns (1.8:1).
ROWS, COLS = 4736, 2624


class _Seen(Exception):
    """Raised by the stand-in explainer to stop the CLI once it has seen the model input."""


@pytest.fixture(scope="module")
def mammo_run():
    return prepare_run("protopnet_resnet18", "synthetic-mammo", image_size=32, num_samples=4, **TINY)


def test_training_on_mammograms_records_the_letterbox_and_other_data_keep_their_crop(mammo_run) -> None:
    cfg = mammo_run.model.pretrained_cfg
    assert (cfg.crop_mode, cfg.crop_pct) == ("border", 1.0)
    assert mammo_run.train.transform.crop_mode == mammo_run.push.transform.crop_mode == "border"
    parts = prepare_run("protopnet_resnet18", "synthetic-parts", image_size=32, num_samples=4, **TINY).model
    assert (parts.pretrained_cfg.crop_mode, parts.pretrained_cfg.crop_pct) == ("center", 0.875)


def test_square_synthetic_images_are_not_resampled_by_the_letterbox(mammo_run) -> None:
    """Synthetic mammograms are generated square at the input size: the letterbox is the identity."""
    raw = mammo_run.push.transform
    mammo_run.push.transform = None
    item = mammo_run.push[0]
    mammo_run.push.transform = raw
    mean, std = raw.mean, raw.std
    torch.testing.assert_close(raw(item)["image"], (item["image"] - mean) / std, rtol=0, atol=1e-6)
    torch.testing.assert_close(raw(item)["mask"], item["mask"], rtol=0, atol=0)


def test_protozoo_explain_feeds_the_model_every_row_of_a_4736x2624_dicom(mammo_run, tmp_path, monkeypatch) -> None:
    """The must-show: the top and bottom rows (pectoral region, lower breast) reach the model."""
    pixels = np.full((ROWS, COLS), 1000, dtype=np.uint16)
    band = ROWS // 32  # one row of the 32-px model input
    pixels[:band] = 4000  # the top band
    pixels[-band:] = 2500  # the bottom band
    dicom = write_dicom(tmp_path / "full_field.dcm", pixels, window=(2000, 4000))  # 0..4000 -> 0..1
    mammo_run.model.save_pretrained(tmp_path / "model")
    seen = []

    def stand_in(model, image, top_k, class_idx=None):
        seen.append(image)
        raise _Seen

    monkeypatch.setattr(explain_cli, "explain", stand_in)
    with pytest.raises(_Seen):
        protozoo.cli.main(["explain", str(dicom), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out")])
    cfg = mammo_run.model.pretrained_cfg
    pixels_in = seen[0][0] * cfg.std[0] + cfg.mean[0]  # (32, 32) back in [0, 1]
    fitted_width = round(COLS / ROWS * 32)  # 18 columns: the aspect is kept
    left = (32 - fitted_width) // 2
    content = pixels_in[:, left : left + fitted_width]
    assert content[0].mean() > 0.85, "the top rows were cut away"
    assert abs(content[-1].mean() - 0.625) < 0.1, "the bottom rows were cut away"
    assert abs(content[16].mean() - 0.25) < 0.02
    assert (
        pixels_in[:, :left].abs().max() < 1e-6 and pixels_in[:, left + fitted_width :].abs().max() < 1e-6
    )  # black pad


@pytest.mark.parametrize(
    "shape, size, crop_pct",
    [((50, 90), (32, 48), 1.0), ((90, 50), (32, 32), 1.0), ((4736 // 37, 2624 // 37), (32, 32), 0.875)],
)
def test_border_is_timms_letterbox(shape, size, crop_pct) -> None:
    """Our eval geometry equals timm's ``crop_mode="border"`` pipeline (with black fill)."""
    import timm.data
    from timm.data.transforms import center_crop_or_pad

    image = torch.rand(1, *shape)
    cfg = resolve_data_config(
        input_size=(1, *size), mean=(0.0,), std=(1.0,), interpolation="bilinear", crop_pct=crop_pct, crop_mode="border"
    )
    ours = build_transforms(cfg, train=False)({"image": image})["image"]
    timm_tf = timm.data.create_transform(
        input_size=(1, *size), crop_pct=crop_pct, crop_mode="border", interpolation="bilinear", mean=(0.0,), std=(1.0,)
    )
    resize_keep_ratio = timm_tf.transforms[0]
    reference = center_crop_or_pad(resize_keep_ratio(image), list(size), fill=0)
    torch.testing.assert_close(ours, reference.clamp(0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("h, w, x, y", [(90, 50, 12.0, 80.0), (40, 120, 110.0, 5.0), (64, 64, 30.0, 10.0)])
def test_letterbox_moves_mask_and_keypoint_with_the_image(h, w, x, y) -> None:
    image = torch.from_numpy(dot_image(h, w, x, y)).float()[None]  # (1, H, W)
    item = {
        "image": image,
        "mask": (image > 0.2).float(),
        "foreground": torch.ones(1, h, w, dtype=torch.bool),
        "parts": torch.tensor([[x, y]]),
        "parts_visible": torch.tensor([True]),
    }
    from torchvision.transforms.v2 import InterpolationMode

    letterbox(item, (0, 0, h, w), (48, 48), InterpolationMode.BILINEAR)
    px, py = item["parts"][0].tolist()
    gray = item["image"][0]
    by, bx = divmod(int(gray.argmax()), 48)
    assert abs(bx - px) <= 1.0 and abs(by - py) <= 1.0 and bool(item["parts_visible"][0])
    ys, xs = torch.nonzero(item["mask"][0], as_tuple=True)
    assert abs(xs.float().mean() - px) <= 1.0 and abs(ys.float().mean() - py) <= 1.0
    # The foreground is the fitted image exactly: the padding is background.
    fg = item["foreground"][0]
    assert fg.dtype == torch.bool and fg.sum() == round(h * 48 / max(h, w)) * round(w * 48 / max(h, w))


def test_a_letterboxing_dataset_resizes_its_masks_as_its_images() -> None:
    """``image_size`` of a mammogram / fundus dataset letterboxes: a mask drawn as the image stays the image."""
    pattern = torch.zeros(1, 70, 30)
    pattern[:, 5:20, 3:9] = 1
    pattern[:, 60:, 20:] = 1
    out = resize_item({"image": pattern.clone(), "mask": pattern.bool()}, (32, 32), "nearest", keep_aspect=True)
    assert out["image"].shape == out["mask"].shape == (1, 32, 32)
    assert torch.equal(out["image"] > 0.5, out["mask"])
    assert out["mask"][0, -1].any() and out["mask"][0, :, :4].sum() == 0  # bottom row kept, left side padded


def test_bad_crop_mode_is_named() -> None:
    with pytest.raises(ValueError, match="crop_mode 'letterbox' is not one of .*'border' is the letterbox"):
        resolve_data_config(crop_mode="letterbox")
    with pytest.raises(ValueError, match="crop_pct must lie in"):
        resolve_data_config(crop_pct=1.5)


def test_visible_fraction_says_what_a_geometry_cuts() -> None:
    """The issue's figure: timm's centre crop at 0.875 keeps 48% of a 4736x2624 mammogram's rows."""
    centre = build_transforms(resolve_data_config(input_size=(1, 128, 128)), train=False)
    rows, cols = centre.visible_fraction(ROWS, COLS)
    assert rows == pytest.approx(0.485, abs=0.005) and cols == pytest.approx(0.875, abs=0.005)
    whole = build_transforms(
        resolve_data_config(input_size=(1, 128, 128), crop_mode="border", crop_pct=1.0), train=False
    )
    assert whole.visible_fraction(ROWS, COLS) == (1.0, 1.0)
    trimmed = build_transforms(
        resolve_data_config(input_size=(1, 128, 128), crop_mode="border", crop_pct=0.875), train=False
    )
    assert trimmed.visible_fraction(ROWS, COLS)[0] == pytest.approx(0.875, abs=0.01)


def test_protozoo_explain_says_what_a_centre_cropped_model_does_not_see(tmp_path, monkeypatch, capsys) -> None:
    """A model trained with the centre crop is fed as trained, and the CLI says what that cuts away."""
    import protozoo

    model = protozoo.create_model("protopnet_resnet18", in_chans=1, num_classes=2, **TINY)
    model.pretrained_cfg = model.pretrained_cfg.replace(input_size=(1, 32, 32))  # crop_mode "center", 0.875
    model.save_pretrained(tmp_path / "model")
    dicom = write_dicom(tmp_path / "view.dcm", np.full((ROWS // 8, COLS // 8), 1000, dtype=np.uint16))
    monkeypatch.setattr(explain_cli, "explain", lambda *args, **kwargs: (_ for _ in ()).throw(_Seen()))
    with pytest.raises(_Seen):
        protozoo.cli.main(["explain", str(dicom), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out")])
    assert (
        "crop_mode='center' crop_pct=0.875, so 48% of its rows and 88% of its columns reach the model"
        in capsys.readouterr().out
    )


def test_a_cbis_ddsm_dataset_letterboxes_its_views_and_their_roi_masks(tmp_path) -> None:
    """``image_size`` on real-format CBIS-DDSM files: each 80 x 32 view is letterboxed, its ROI mask with it."""
    from fixtures import make_cbis_breasts

    from protozoo.data import load_dataset

    root = make_cbis_breasts(tmp_path / "cbis", per_class=1, shape=(80, 32))
    whole = load_dataset(f"cbis-ddsm:{root}", "train")
    boxed = load_dataset(f"cbis-ddsm:{root}", "train", image_size=40)
    for index in range(len(whole)):
        for view in ("cc", "mlo"):
            raw, out = whole[index]["views"][view], boxed[index]["views"][view]
            assert out["image"].shape == out["mask"].shape == (1, 40, 40)
            assert out["image"][0, :, :12].abs().max() == 0 and out["image"][0, :, -12:].abs().max() == 0  # 16 px wide
            # The mass keeps its place and size: half the resolution, the mask's rows and columns halved.
            ys, xs = torch.nonzero(raw["mask"][0], as_tuple=True)
            oy, ox = torch.nonzero(out["mask"][0], as_tuple=True)
            assert abs(oy.float().mean() - (ys.float().mean() + 0.5) / 2 + 0.5) <= 0.5
            assert abs(ox.float().mean() - 12 - (xs.float().mean() + 0.5) / 2 + 0.5) <= 0.5
            assert float(out["mask"].sum()) == pytest.approx(float(raw["mask"].sum()) / 4, rel=0.3)
