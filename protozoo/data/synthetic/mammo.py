"""Synthetic two-view mammograms (CC + MLO) with masses and calcifications.

Geometry (canonical left breast, chest wall on the left image edge; right breasts
are mirrored): each view is the half of an ellipse with centre ``c`` on the chest
wall, semi-axis ``a`` along the nipple axis (tilted by ``alpha``) and ``b`` across it.
The nipple is ``c + a (cos alpha, sin alpha)``. The CC axis is nearly horizontal; the
MLO breast is deeper, taller, tilted downwards and shows the pectoral muscle as a
bright triangle in the upper chest-wall corner.

CC/MLO rule: the lesion centre lies at the same distance ``r`` from the nipple in
both views (the radiologists' "equal nipple distance" rule). Its direction is the
view's nipple-to-chest-wall axis rotated by ``phi_cc`` (medio-lateral position) in
CC and by an independent ``phi_mlo`` (supero-inferior position) in MLO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._common import (
    Item,
    OnError,
    SyntheticDataset,
    Transform,
    fractal_noise,
    modulated_radius,
    pixel_grid,
    radial_profile,
    soft_inside,
    window,
)

MAMMO_CLASSES: list[str] = ["normal", "benign", "malignant"]
MAMMO_VIEWS: list[str] = ["cc", "mlo"]
MAMMO_FINDINGS: dict[str, int] = {
    "none": 0,
    "circumscribed_mass": 1,
    "spiculated_mass": 2,
    "irregular_mass": 2,
    "calcifications": 2,
    "spiculated_mass+calcifications": 2,
}
_MALIGNANT = ["spiculated_mass", "irregular_mass", "calcifications", "spiculated_mass+calcifications"]


@dataclass
class _Breast:
    """One view's breast outline, in pixels."""

    center: np.ndarray  # (2,) x, y on the chest wall
    a: float
    b: float
    alpha: float
    pectoral: tuple[float, float] | None = None  # (width on top edge, height on chest wall)

    def __post_init__(self) -> None:  # python floats keep float32 pixel arithmetic in float32
        self.center = self.center.astype(np.float32)
        self.a, self.b, self.alpha = float(self.a), float(self.b), float(self.alpha)
        if self.pectoral is not None:
            self.pectoral = (float(self.pectoral[0]), float(self.pectoral[1]))

    @property
    def axis(self) -> np.ndarray:
        return np.array([math.cos(self.alpha), math.sin(self.alpha)], dtype=np.float32)

    @property
    def nipple(self) -> np.ndarray:
        return self.center + self.a * self.axis

    def rho(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Elliptic radius (1 on the skin line) of points or pixels."""
        dx, dy = x - self.center[0], y - self.center[1]
        cos, sin = math.cos(self.alpha), math.sin(self.alpha)
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        return np.sqrt((u / self.a) ** 2 + (v / self.b) ** 2)

    def pectoral_sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance (pixels, negative inside) to the pectoral triangle's edge."""
        width, height = self.pectoral
        return (x / width + y / height - 1.0) / math.hypot(1.0 / width, 1.0 / height)

    def fits(self, points: np.ndarray, extent: float, size: int) -> np.ndarray:
        """(N,) bool: a lesion of radius ``extent`` at each (N, 2) point lies in the breast."""
        x, y = points[:, 0], points[:, 1]
        ok = self.rho(x, y) + extent / min(self.a, self.b) <= 0.92
        ok &= (x >= extent + 2) & (y >= extent + 2) & (y <= size - extent - 3)
        if self.pectoral is not None:
            ok &= self.pectoral_sdf(x, y) >= extent + 2
        return ok


@dataclass
class _Lesion:
    """A lesion in its own frame (pixels); rendered once per view."""

    finding: str
    mass: str | None  # "circumscribed", "irregular", "spiculated" or None
    radius: float
    aspect: float
    profile: np.ndarray  # (harmonics, 2) outline modulation
    spicules: np.ndarray  # (S, 3) angle, length, half-width
    calcs: np.ndarray  # (N, 4) offset x, offset y, sigma, amplitude
    cluster_radius: float
    contrast: float

    @property
    def extent(self) -> float:
        """Radius of a disc containing the whole lesion."""
        spic = self.spicules[:, 1].max() if len(self.spicules) else 0.0
        return max(self.radius * (1.3 if self.mass else 0.0), spic, self.cluster_radius) + 2.0


class SyntheticMammo(SyntheticDataset):
    """Synthetic breasts seen in CC and MLO views, labelled normal / benign / malignant.

    Benign breasts hold one round or oval circumscribed mass; malignant ones a
    spiculated or irregular mass and/or a cluster of pleomorphic calcifications;
    normal ones no lesion. Distractors (present in every class) are fuzzy islands of
    dense tissue and isolated round benign calcifications.

    Item keys: ``image`` (1, H, W) CC view; ``mask`` (1, H, W) float CC lesion mask
    (empty for normal); ``label`` int; ``id`` str; ``laterality`` "L"/"R";
    ``finding`` str (a key of ``MAMMO_FINDINGS``); ``nipple`` (2,) CC nipple (x, y);
    ``views`` {"cc": {...}, "mlo": {...}} each with ``image``, ``mask``, ``id``,
    ``nipple``, ``foreground``; ``foreground`` (1, H, W) float: the breast (1 inside the skin
    line), exact; ``shortcut_box`` (4,) int64; ``shortcut_label`` int.

    Args:
        split: "train", "val" or "test".
        image_size: Side of the square images in pixels.
        num_samples: Dataset length; None uses 512 / 128 / 256 for train / val / test.
        seed: Non-negative seed.
        shortcut: Probability of the shortcut tag (see ``SyntheticDataset``).
        transform: Optional callable applied to the item dict.
        val_fraction: Only 0 (the val split is generated).
        on_error: Accepted for the common signature.
        lesion_contrast: Peak intensity added by a mass (calcifications: 1.5-3x).
        lesion_size: Multiplier of lesion radii (masses 4-7 px at 128 px).
        noise_std: Std of the additive white noise.
        num_distractors: Dense-tissue islands and benign calcifications per view.
    """

    #: The letterbox: a mammogram's or fundus photograph's whole field of view (``ItemDataset.crop_mode``).
    crop_mode = "border"

    name = "synthetic-mammo"

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
        lesion_contrast: float = 0.15,
        lesion_size: float = 1.0,
        noise_std: float = 0.03,
        num_distractors: int = 3,
    ) -> None:
        super().__init__(
            split,
            image_size=image_size,
            num_samples=num_samples,
            seed=seed,
            shortcut=shortcut,
            transform=transform,
            val_fraction=val_fraction,
            on_error=on_error,
        )
        self.classes = list(MAMMO_CLASSES)
        self.lesion_contrast = float(lesion_contrast)
        self.lesion_size = float(lesion_size)
        self.noise_std = float(noise_std)
        self.num_distractors = int(num_distractors)

    def generate(self, index: int, *, lesions: bool = True) -> Item:
        """Builds item ``index``.

        Args:
            index: Sample index.
            lesions: If False, renders the same breast without its lesion (empty
                masks, label "normal"): a counterfactual for explanation tests.

        Returns:
            The item dict (transform not applied).
        """
        rng_anatomy, rng_lesion, rng_noise, rng_marker = self._rngs(index, 4)
        size, scale = self.image_size, self.image_size / 128.0
        label = int(rng_lesion.integers(len(MAMMO_CLASSES)))
        lesion = self._sample_lesion(rng_lesion, label, scale) if lesions else None
        finding = lesion.finding if lesion is not None else "none"
        label = MAMMO_FINDINGS[finding]

        laterality = "L" if rng_anatomy.random() < 0.5 else "R"
        density = rng_anatomy.uniform(0.0, 1.0)
        cc, mlo = self._sample_breasts(rng_anatomy, size)
        centers = self._place(rng_lesion, lesion, cc, mlo, size) if lesion is not None else None

        views, foregrounds = {}, {}
        for v, breast in enumerate((cc, mlo)):
            image = self._anatomy(rng_anatomy, breast, density, scale)  # (H, W)
            mask = np.zeros((size, size), dtype=bool)
            if lesion is not None:
                angle = rng_lesion.uniform(0.0, 2.0 * np.pi)
                self._draw_lesion(image, mask, lesion, centers[v], angle)
            image += self.noise_std * rng_noise.standard_normal(image.shape, dtype=np.float32)
            nipple = breast.nipple.copy()
            if laterality == "R":
                image, mask = image[:, ::-1], mask[:, ::-1]
                nipple[0] = size - 1 - nipple[0]
            yy, xx = pixel_grid(size, size)
            breast_area = breast.rho(xx, yy) <= 1.0  # the foreground: the breast itself (no RNG drawn)
            if laterality == "R":
                breast_area = breast_area[:, ::-1]
            foregrounds[MAMMO_VIEWS[v]] = torch.from_numpy(breast_area[None].astype(np.float32))
            views[MAMMO_VIEWS[v]] = (np.clip(image, 0.0, 1.0)[None].copy(), mask[None].copy(), nipple)

        shortcut = self._apply_shortcut(rng_marker, label, [img for img, _, _ in views.values()])
        sample_id = self.sample_id(index)
        view_items = {
            name: {
                "image": torch.from_numpy(img),
                "mask": torch.from_numpy(mask.astype(np.float32)),
                "id": f"{sample_id}/{name}",
                "nipple": torch.from_numpy(nipple.astype(np.float32)),
                "foreground": foregrounds[name],
            }
            for name, (img, mask, nipple) in views.items()
        }
        cc_item = view_items["cc"]
        return {
            "image": cc_item["image"],
            "mask": cc_item["mask"],
            "foreground": cc_item["foreground"],
            "label": label,
            "id": sample_id,
            "laterality": laterality,
            "finding": finding,
            "nipple": cc_item["nipple"],
            "views": view_items,
            **shortcut,
        }

    def _sample_lesion(self, rng: np.random.Generator, label: int, scale: float) -> _Lesion | None:
        if label == 0:
            return None
        finding = "circumscribed_mass" if label == 1 else _MALIGNANT[rng.integers(len(_MALIGNANT))]
        mass = finding.split("_mass")[0] if "_mass" in finding else None
        radius = scale * self.lesion_size * float(rng.uniform(4.0, 7.0))
        spicules = np.zeros((0, 3), dtype=np.float32)
        if mass == "spiculated":
            n = int(rng.integers(8, 17))
            spicules = np.stack(
                [
                    rng.uniform(0.0, 2.0 * np.pi, n),
                    radius * rng.uniform(1.3, 2.3, n),
                    scale * rng.uniform(0.6, 1.0, n),
                ],
                axis=1,
            ).astype(np.float32)
        calcs = np.zeros((0, 4), dtype=np.float32)
        cluster_radius = 0.0
        if "calcifications" in finding:
            n = int(rng.integers(6, 15))
            cluster_radius = scale * self.lesion_size * float(rng.uniform(4.0, 8.0))
            dist = cluster_radius * np.sqrt(rng.uniform(0.0, 1.0, n)) * 0.85
            theta = rng.uniform(0.0, 2.0 * np.pi, n)
            calcs = np.stack(
                [
                    dist * np.cos(theta),
                    dist * np.sin(theta),
                    scale * rng.uniform(0.35, 0.9, n),  # pleomorphic: varied sizes
                    self.lesion_contrast * rng.uniform(1.5, 3.0, n),
                ],
                axis=1,
            ).astype(np.float32)
        amplitude = {"circumscribed": 0.0, "irregular": 0.35, "spiculated": 0.15}.get(mass, 0.0)
        return _Lesion(
            finding=finding,
            mass=mass,
            radius=radius,
            aspect=float(rng.uniform(0.6, 1.0)) if mass == "circumscribed" else 1.0,
            profile=radial_profile(rng, amplitude),
            spicules=spicules,
            calcs=calcs,
            cluster_radius=cluster_radius,
            contrast=self.lesion_contrast * float(rng.uniform(0.8, 1.2)),
        )

    @staticmethod
    def _sample_breasts(rng: np.random.Generator, size: int) -> tuple[_Breast, _Breast]:
        a = size * rng.uniform(0.55, 0.72)
        cc = _Breast(
            center=np.array([0.0, size * rng.uniform(0.45, 0.55)], dtype=np.float32),
            a=a,
            b=size * rng.uniform(0.36, 0.45),
            alpha=np.deg2rad(rng.uniform(-5.0, 5.0)),
        )
        mlo = _Breast(
            center=np.array([0.0, size * rng.uniform(0.3, 0.4)], dtype=np.float32),
            a=a * rng.uniform(1.0, 1.1),
            b=size * rng.uniform(0.45, 0.55),
            alpha=np.deg2rad(rng.uniform(15.0, 30.0)),
            pectoral=(size * rng.uniform(0.2, 0.35), size * rng.uniform(0.5, 0.8)),
        )
        return cc, mlo

    @staticmethod
    def _place(
        rng: np.random.Generator, lesion: _Lesion, cc: _Breast, mlo: _Breast, size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lesion centres (x, y) in CC and MLO at equal nipple distance (module docstring)."""
        n = 64
        r = cc.a * rng.uniform(0.15, 0.8, n)
        phis = rng.uniform(-0.8, 0.8, (2, n))
        centers, ok = [], np.ones(n, dtype=bool)
        for breast, phi in zip((cc, mlo), phis):
            direction = breast.alpha + np.pi + phi
            points = breast.nipple[None] + r[:, None] * np.stack([np.cos(direction), np.sin(direction)], axis=1)
            ok &= breast.fits(points, lesion.extent, size)
            centers.append(points)
        choice = int(np.argmax(ok))  # first valid candidate (0 if, rarely, none is)
        return centers[0][choice], centers[1][choice]

    def _anatomy(self, rng: np.random.Generator, breast: _Breast, density: float, scale: float) -> np.ndarray:
        """Lesion-free view: tissue texture, skin line, pectoral muscle, distractors; (H, W)."""
        size = self.image_size
        yy, xx = pixel_grid(size, size)
        rho = breast.rho(xx, yy)  # (H, W)
        inside = soft_inside((rho - 1.0) * breast.b, 1.5)
        thick = np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0))
        dx, dy = xx - breast.center[0], yy - breast.center[1]
        cos, sin = math.cos(breast.alpha), math.sin(breast.alpha)
        u, v = (dx * cos + dy * sin) / breast.a, (-dx * sin + dy * cos) / breast.b
        glandular_zone = np.exp(-((u - 0.45) ** 2) / 0.1 - v**2 / 0.25)
        cloud = fractal_noise(rng, (size, size), 3.0)
        gland = 1.0 / (1.0 + np.exp(-2.0 * (cloud + 2.5 * glandular_zone + 1.5 * density - 2.8)))
        fine = fractal_noise(rng, (size, size), 1.6)
        tissue = 0.2 + 0.15 * thick + 0.28 * gland * np.sqrt(thick) + 0.02 * fine
        image = 0.03 + inside * (tissue - 0.03)
        if breast.pectoral is not None:
            muscle = soft_inside(breast.pectoral_sdf(xx, yy), 2.0)
            image = image * (1.0 - muscle) + muscle * (0.55 + 0.03 * cloud + 0.02 * fine)
        for _ in range(self.num_distractors):
            for _ in range(16):
                point = rng.uniform(0.0, size, (1, 2)).astype(np.float32)
                if breast.fits(point, 6.0 * scale, size)[0]:
                    break
            else:
                continue
            if rng.random() < 0.6:  # fuzzy dense-tissue island
                sigma = scale * float(rng.uniform(3.0, 6.0))
                amp = self.lesion_contrast * float(rng.uniform(0.5, 1.0))
            else:  # isolated round benign calcification
                sigma = scale * float(rng.uniform(0.8, 1.2))
                amp = self.lesion_contrast * float(rng.uniform(1.5, 2.5))
            _add_gaussian(image, point[0], sigma, amp)
        return image.astype(np.float32)

    def _draw_lesion(
        self, image: np.ndarray, mask: np.ndarray, lesion: _Lesion, center: np.ndarray, angle: float
    ) -> None:
        """Adds the lesion (rotated by ``angle``) to the (H, W) image and mask in place."""
        size = self.image_size
        win = window(center, lesion.extent + 2.0, size, size)
        yy, xx = pixel_grid(size, size)
        lx, ly = xx[win] - float(center[0]), yy[win] - float(center[1])  # (h, w)
        cos, sin = math.cos(angle), math.sin(angle)
        lu, lv = lx * cos + ly * sin, -lx * sin + ly * cos
        intensity = np.zeros_like(lx)
        footprint = np.zeros(lx.shape, dtype=bool)
        if lesion.mass == "circumscribed":
            minor = lesion.radius * lesion.aspect
            ell = np.sqrt((lu / lesion.radius) ** 2 + (lv / minor) ** 2)
            sdf = (ell - 1.0) * minor
            intensity = soft_inside(sdf, 1.0) * (0.8 + 0.2 * np.sqrt(np.clip(1.0 - ell**2, 0.0, 1.0)))
            footprint = sdf <= 0.0
        elif lesion.mass is not None:
            rho, theta = np.hypot(lu, lv), np.arctan2(lv, lu)
            core = lesion.radius * (0.7 if lesion.mass == "spiculated" else 1.0)
            sdf = rho - modulated_radius(theta, core, lesion.profile)
            intensity = soft_inside(sdf, 2.0 if lesion.mass == "irregular" else 1.2)
            footprint = sdf <= 0.0
            if len(lesion.spicules):
                delta = theta[None] - lesion.spicules[:, 0, None, None]  # (S, h, w)
                along, across = rho * np.cos(delta), np.abs(rho * np.sin(delta))
                taper = np.clip(1.0 - along / lesion.spicules[:, 1, None, None], 0.0, 1.0) * (along > 0)
                spikes = (np.exp(-((across / lesion.spicules[:, 2, None, None]) ** 2)) * taper).max(axis=0)
                intensity = np.maximum(intensity, 0.9 * spikes)
                footprint |= spikes > 0.4
        intensity = lesion.contrast * intensity
        if len(lesion.calcs):
            ox = lesion.calcs[:, 0] * cos - lesion.calcs[:, 1] * sin
            oy = lesion.calcs[:, 0] * sin + lesion.calcs[:, 1] * cos
            d2 = (lx[None] - ox[:, None, None]) ** 2 + (ly[None] - oy[:, None, None]) ** 2  # (N, h, w)
            sigma2 = 2.0 * lesion.calcs[:, 2, None, None] ** 2
            intensity = intensity + (lesion.calcs[:, 3, None, None] * np.exp(-d2 / sigma2)).sum(axis=0)
            footprint |= np.hypot(lx, ly) <= lesion.cluster_radius
        image[win] += intensity
        mask[win] |= footprint


def _add_gaussian(image: np.ndarray, center: np.ndarray, sigma: float, amplitude: float) -> None:
    """Adds an isotropic Gaussian spot to the (H, W) image in place."""
    win = window(center, 3.0 * sigma, *image.shape)
    if win is None:
        return
    yy, xx = pixel_grid(*image.shape)
    d2 = (xx[win] - float(center[0])) ** 2 + (yy[win] - float(center[1])) ** 2
    image[win] += amplitude * np.exp(-d2 / (2.0 * sigma**2))
