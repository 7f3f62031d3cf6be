"""Synthetic colour fundus photographs with five lesion types and a rule-based AMD label.

AMD rule (``amd_rule``): an eye is AMD iff at least ``drusen_threshold`` drusen have
their centre inside the macula (the disc of radius ``macula_radius`` around the
fovea), or geographic atrophy is present, or a neovascular scar is present.
Haemorrhages, hard exudates and drusen outside the macula (or too few inside) do
not make an eye AMD.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from protozoo.lesions import FUNDUS_LESIONS as LESION_VOCABULARY

from ._common import (
    Item,
    OnError,
    SyntheticDataset,
    Transform,
    fractal_noise,
    gaussian_blur,
    modulated_radius,
    pixel_grid,
    radial_profile,
    soft_inside,
    window,
)

AMD_CLASSES: list[str] = ["non-AMD", "AMD"]
FUNDUS_LESIONS: list[str] = list(LESION_VOCABULARY)  # protozoo.lesions: the names every lesion dataset and model share
DRUSEN, HAEMORRHAGE, EXUDATE, ATROPHY, SCAR = range(len(FUNDUS_LESIONS))

_COLOURS = {
    "disc": (1.0, 0.86, 0.6),
    "cup": (1.0, 0.96, 0.85),
    "drusen": (0.98, 0.85, 0.42),
    "haemorrhage": (0.32, 0.03, 0.02),
    "hard_exudate": (1.0, 0.98, 0.72),
    "geographic_atrophy": (0.98, 0.68, 0.5),
    "neovascular_scar": (0.86, 0.82, 0.72),
    "pigment": (0.15, 0.08, 0.05),
    "pale_spot": (0.95, 0.75, 0.5),
}
_VESSEL_DARKENING = np.array([0.45, 0.8, 0.75], dtype=np.float32)  # per RGB channel


def amd_rule(lesions: torch.Tensor, drusen_in_macula: int, drusen_threshold: int = 5) -> int:
    """AMD label (0/1) from the multi-hot lesion vector and the macular drusen count.

    Args:
        lesions: (L,) multi-hot vector ordered as ``FUNDUS_LESIONS``.
        drusen_in_macula: Number of drusen centred inside the macula.
        drusen_threshold: Minimum macular drusen count that makes an eye AMD.

    Returns:
        1 for AMD, else 0.
    """
    return int(drusen_in_macula >= drusen_threshold or bool(lesions[ATROPHY]) or bool(lesions[SCAR]))


class SyntheticFundus(SyntheticDataset):
    """Synthetic fundus photographs (RGB) labelled non-AMD / AMD by ``amd_rule``.

    The image is an orange-red disc on black with vignetting and choroidal texture,
    a bright optic disc with cup, a darker macula centred on the fovea and a tree of
    dark vessels (four arcades from the disc, arcades curving around the macula).
    Half of the eyes are drawn from AMD patterns (many macular drusen, geographic
    atrophy or a neovascular scar), half from non-AMD ones (healthy, a few macular
    drusen); peripheral drusen, haemorrhages and hard exudates occur in both.
    Distractors are faint blurry pale spots (not lesions, not in any mask).

    Item keys: ``image`` (3, H, W); ``label`` int; ``lesions`` (5,) float multi-hot;
    ``mask`` (5, H, W) float per-lesion masks; ``id`` str; ``laterality`` "L"/"R"
    (right eyes have the optic disc on the right); ``fovea`` and ``optic_disc`` (2,)
    (x, y); ``macula_radius`` float; ``drusen_in_macula`` int; ``shortcut_box`` (4,)
    int64; ``shortcut_label`` int.

    Args:
        split: "train", "val" or "test".
        image_size: Side of the square images in pixels.
        num_samples: Dataset length; None uses 512 / 128 / 256 for train / val / test.
        seed: Non-negative seed.
        shortcut: Probability of the shortcut tag (see ``SyntheticDataset``).
        transform: Optional callable applied to the item dict.
        val_fraction: Only 0 (the val split is generated).
        on_error: Accepted for the common signature.
        lesion_contrast: Peak opacity in [0, 1] of lesions blended over the retina.
        lesion_size: Multiplier of lesion radii.
        noise_std: Std of the additive white noise.
        num_distractors: Faint pale spots per image.
        drusen_threshold: Macular drusen count from which an eye is AMD.
    """

    #: The letterbox: a mammogram's or fundus photograph's whole field of view (``ItemDataset.crop_mode``).
    crop_mode = "border"

    name = "synthetic-fundus"
    lesion_names = FUNDUS_LESIONS

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
        lesion_contrast: float = 0.7,
        lesion_size: float = 1.0,
        noise_std: float = 0.02,
        num_distractors: int = 4,
        drusen_threshold: int = 5,
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
        if drusen_threshold < 1:
            raise ValueError(f"drusen_threshold must be >= 1, got {drusen_threshold}")
        self.classes = list(AMD_CLASSES)
        self.lesion_contrast = float(lesion_contrast)
        self.lesion_size = float(lesion_size)
        self.noise_std = float(noise_std)
        self.num_distractors = int(num_distractors)
        self.drusen_threshold = int(drusen_threshold)

    def generate(self, index: int, *, lesions: bool = True) -> Item:
        """Builds item ``index``.

        Args:
            index: Sample index.
            lesions: If False, renders the same eye without lesions (empty masks,
                label by the rule, i.e. non-AMD): a counterfactual for explanations.

        Returns:
            The item dict (transform not applied).
        """
        rng_anatomy, rng_lesion, rng_noise, rng_marker = self._rngs(index, 4)
        size, scale = self.image_size, self.image_size / 128.0
        eye = self._sample_eye(rng_anatomy, size)
        image = self._anatomy(rng_anatomy, eye, scale)  # (3, H, W)
        yy, xx = pixel_grid(size, size)
        field = soft_inside(np.hypot(xx - eye["centre"][0], yy - eye["centre"][1]) - eye["radius"], 1.5)  # (H, W)
        masks = np.zeros((len(FUNDUS_LESIONS), size, size), dtype=bool)
        present = np.zeros(len(FUNDUS_LESIONS), dtype=np.float32)
        drusen_in_macula = 0
        if lesions:
            drusen_in_macula = self._draw_lesions(rng_lesion, eye, image, masks, scale)
            masks &= field[None] >= 0.5
            present = masks.any(axis=(1, 2)).astype(np.float32)
        image += self.noise_std * rng_noise.standard_normal(image.shape, dtype=np.float32)
        image = np.clip(image * field[None], 0.0, 1.0)
        lesion_vector = torch.from_numpy(present)
        label = amd_rule(lesion_vector, drusen_in_macula, self.drusen_threshold)
        shortcut = self._apply_shortcut(rng_marker, label, [image])
        return {
            "image": torch.from_numpy(image),
            "label": label,
            "lesions": lesion_vector,
            "mask": torch.from_numpy(masks.astype(np.float32)),
            "foreground": torch.from_numpy((field >= 0.5)[None].astype(np.float32)),  # the fundus disc
            "id": self.sample_id(index),
            "laterality": eye["laterality"],
            "fovea": torch.from_numpy(eye["fovea"].astype(np.float32)),
            "optic_disc": torch.from_numpy(eye["disc"].astype(np.float32)),
            "macula_radius": float(eye["macula_radius"]),
            "drusen_in_macula": drusen_in_macula,
            **shortcut,
        }

    @staticmethod
    def _sample_eye(rng: np.random.Generator, size: int) -> dict:
        laterality = "L" if rng.random() < 0.5 else "R"
        temporal = 1.0 if laterality == "L" else -1.0  # direction from disc to fovea in x
        centre = (size / 2.0 + rng.uniform(-0.02, 0.02, 2) * size).astype(np.float32)
        disc_radius = size * float(rng.uniform(0.055, 0.068))
        fovea = (centre + rng.uniform(-0.03, 0.03, 2) * size).astype(np.float32)
        dist = 5.0 * disc_radius * float(rng.uniform(0.9, 1.05))
        disc = (fovea + np.array([-temporal * dist, -dist * rng.uniform(0.0, 0.15)])).astype(np.float32)
        return {
            "laterality": laterality,
            "temporal": temporal,
            "centre": centre,
            "radius": size * float(rng.uniform(0.44, 0.48)),
            "fovea": fovea,
            "disc": disc,
            "disc_radius": disc_radius,
            "macula_radius": 3.0 * disc_radius,
            "disc_fovea": dist,
            "pigment": np.array(
                [rng.uniform(0.75, 0.92), rng.uniform(0.28, 0.42), rng.uniform(0.08, 0.18)], dtype=np.float32
            ),
        }

    def _anatomy(self, rng: np.random.Generator, eye: dict, scale: float) -> np.ndarray:
        """Lesion-free fundus before the field-of-view cut: retina, disc, macula, vessels, distractors."""
        size = self.image_size
        yy, xx = pixel_grid(size, size)
        r_centre = np.hypot(xx - eye["centre"][0], yy - eye["centre"][1])  # (H, W)
        texture = fractal_noise(rng, (size, size), 2.2)
        gradient = rng.uniform(-0.1, 0.1, 2).astype(np.float32)
        shade = (1.0 - 0.5 * (r_centre / eye["radius"]) ** 3) * (
            1.0 + gradient[0] * (xx / size - 0.5) + gradient[1] * (yy / size - 0.5)
        )
        image = eye["pigment"][:, None, None] * (shade * (1.0 + 0.06 * texture))[None]  # (3, H, W)
        r_fovea2 = (xx - eye["fovea"][0]) ** 2 + (yy - eye["fovea"][1]) ** 2
        macula = np.exp(-r_fovea2 / (2.0 * (0.6 * eye["macula_radius"]) ** 2))
        image *= 1.0 - macula[None] * np.array([0.3, 0.45, 0.45], dtype=np.float32)[:, None, None]
        r_disc = np.hypot(xx - eye["disc"][0], yy - eye["disc"][1])
        disc = soft_inside(r_disc - eye["disc_radius"], 1.2)
        cup = soft_inside(r_disc - 0.45 * eye["disc_radius"], 2.0)
        disc_colour = np.array(_COLOURS["disc"], dtype=np.float32)[:, None, None] * (1.0 - 0.3 * cup[None])
        disc_colour += np.array(_COLOURS["cup"], dtype=np.float32)[:, None, None] * 0.3 * cup[None]
        image = image * (1.0 - disc[None]) + disc[None] * disc_colour * (0.92 + 0.05 * texture[None])
        vessels = self._vessels(rng, eye, scale)  # (H, W)
        image *= 1.0 - vessels[None] * _VESSEL_DARKENING[:, None, None]
        centres = self._positions(rng, eye, self.num_distractors, 0.0, 0.85 * eye["radius"], eye["centre"])
        radii = scale * rng.uniform(2.0, 4.0, len(centres))
        spots, _ = _blobs(size, centres, radii, edge=radii)
        _blend(image, spots * self.lesion_contrast * 0.3, _COLOURS["pale_spot"])
        return image.astype(np.float32)

    def _vessels(self, rng: np.random.Generator, eye: dict, scale: float) -> np.ndarray:
        """Vessel opacity map (H, W) in [0, 1]: arcades and branches rendered by splatting."""
        size, dist = self.image_size, eye["disc_fovea"]
        step = 0.5
        layers: dict[float, list[np.ndarray]] = {1.0 * scale: [], 0.75 * scale: [], 0.5 * scale: []}
        # (initial angle in degrees, total turn in degrees, length / disc-fovea distance)
        arcades = [(-70.0, 100.0, 2.0), (70.0, -100.0, 2.0), (-110.0, -30.0, 1.3), (110.0, 30.0, 1.3)]
        for angle0, turn, rel_length in arcades:
            for offset, sigma in ((-8.0, 1.0 * scale), (8.0, 0.75 * scale)):  # vein, artery
                length = dist * rel_length * rng.uniform(0.85, 1.15)
                angle = np.deg2rad(angle0 + offset * np.sign(angle0) + rng.uniform(-8.0, 8.0))
                points, thetas = _walk(rng, np.zeros(2), angle, np.deg2rad(turn) / length, length, step)
                layers[sigma].append(points)
                for i in rng.integers(len(points) // 5, len(points) - 1, int(rng.integers(3, 6))):
                    branch_angle = thetas[i] + rng.choice([-1.0, 1.0]) * np.deg2rad(rng.uniform(25.0, 60.0))
                    branch_length = dist * rng.uniform(0.3, 0.6)
                    curvature = rng.uniform(-1.0, 1.0) / branch_length
                    branch, _ = _walk(rng, points[i], branch_angle, curvature, branch_length, step)
                    layers[0.5 * scale].append(branch)
        vessels = np.zeros((size, size), dtype=np.float32)
        for sigma, paths in layers.items():
            points = np.concatenate(paths)
            points[:, 0] = eye["disc"][0] + eye["temporal"] * points[:, 0]
            points[:, 1] += eye["disc"][1]
            density = _splat(points, size)
            vessels += gaussian_blur(density, sigma) * (step * math.sqrt(2.0 * math.pi) * sigma)
        return np.clip(vessels, 0.0, 1.0)

    def _draw_lesions(
        self, rng: np.random.Generator, eye: dict, image: np.ndarray, masks: np.ndarray, scale: float
    ) -> int:
        """Samples and draws lesions in place on (3, H, W) image and (L, H, W) masks.

        Returns:
            The number of drusen centred inside the macula.
        """
        size, k = self.image_size, self.drusen_threshold
        lesion_scale = scale * self.lesion_size
        alpha = self.lesion_contrast
        fovea, mac_r = eye["fovea"], eye["macula_radius"]
        pattern = rng.choice(["drusen", "atrophy", "scar"], p=[0.5, 0.25, 0.25]) if rng.random() < 0.5 else "none"
        if pattern == "drusen":
            n_macula = int(rng.integers(k, k + 10))
        elif pattern == "none":
            n_macula = int(rng.integers(1, k)) if k > 1 and rng.random() < 0.45 else 0
        else:
            n_macula = int(rng.integers(0, k + 6)) if rng.random() < 0.5 else 0
        n_periphery = int(rng.integers(1, 10)) if rng.random() < 0.3 else 0

        if pattern in ("atrophy", "scar"):
            lesion = ATROPHY if pattern == "atrophy" else SCAR
            centre = fovea + rng.uniform(-0.4, 0.4, 2) * mac_r
            radius = lesion_scale * rng.uniform(6.0, 11.0)
            cover, footprint = _blobs(size, centre[None], np.array([radius]), 1.2, rng, 0.35)
            if lesion == ATROPHY:  # choroidal vessels show through the atrophic area
                stripes = 0.5 + 0.5 * np.sin(6.0 * fractal_noise(rng, (size, size), 2.5))
                _blend(image, cover * alpha * (1.0 - 0.25 * stripes), _COLOURS["geographic_atrophy"])
            else:
                _blend(image, cover * alpha, _COLOURS["neovascular_scar"])
                theta = rng.uniform(0.0, 2.0 * np.pi, int(rng.integers(4, 10)))
                ring = centre + radius * rng.uniform(0.6, 1.0, (len(theta), 1)) * np.stack(
                    [np.cos(theta), np.sin(theta)], axis=1
                )
                clumps, clump_mask = _blobs(size, ring, lesion_scale * rng.uniform(0.8, 1.8, len(theta)), 1.0)
                _blend(image, clumps * alpha, _COLOURS["pigment"])
                footprint |= clump_mask
            masks[lesion] |= footprint

        radii = lesion_scale * rng.uniform(1.0, 2.2, n_macula + n_periphery)
        inner = fovea + (mac_r - 1.0) * np.sqrt(rng.uniform(0.0, 1.0, (n_macula, 1))) * _directions(rng, n_macula)
        outer = self._positions(rng, eye, n_periphery, mac_r + 3.0 * lesion_scale + 2.0, 0.85 * eye["radius"], fovea)
        centres = np.concatenate([inner, outer])
        cover, masks[DRUSEN] = _blobs(size, centres, radii, 0.7 * radii)
        _blend(image, cover * (alpha * float(rng.uniform(0.7, 1.0))), _COLOURS["drusen"])

        if rng.random() < 0.3:
            n_clusters = int(rng.integers(1, 3))
            clusters = self._positions(rng, eye, n_clusters, 0.0, 0.6 * eye["radius"], fovea)
            dots = np.concatenate(
                [
                    c + lesion_scale * rng.uniform(2.0, 8.0, (n, 1)) * _directions(rng, n)
                    for c, n in zip(clusters, rng.integers(4, 12, len(clusters)))
                ]
            )
            cover, masks[EXUDATE] = _blobs(size, dots, lesion_scale * rng.uniform(0.6, 1.3, len(dots)), 0.7)
            _blend(image, cover * min(1.0, 1.3 * alpha), _COLOURS["hard_exudate"])
        if rng.random() < 0.3:
            blots = self._positions(rng, eye, int(rng.integers(1, 5)), 0.0, 0.8 * eye["radius"], eye["centre"])
            radii = lesion_scale * rng.uniform(2.0, 5.0, len(blots))
            cover, masks[HAEMORRHAGE] = _blobs(size, blots, radii, 1.2, rng, 0.3)
            _blend(image, cover * min(1.0, 1.3 * alpha), _COLOURS["haemorrhage"])
        return n_macula

    @staticmethod
    def _positions(
        rng: np.random.Generator, eye: dict, n: int, r_min: float, r_max: float, origin: np.ndarray
    ) -> np.ndarray:
        """(n, 2) points at distance [r_min, r_max] from ``origin``, inside the field, off the disc."""
        if n == 0:
            return np.zeros((0, 2))
        candidates = origin + np.sqrt(rng.uniform(r_min**2, r_max**2, (32 * n, 1))) * _directions(rng, 32 * n)
        ok = np.hypot(*(candidates - eye["centre"]).T) <= 0.9 * eye["radius"]
        ok &= np.hypot(*(candidates - eye["disc"]).T) >= 1.5 * eye["disc_radius"]
        return candidates[np.flatnonzero(ok)[:n]]


def _directions(rng: np.random.Generator, n: int) -> np.ndarray:
    theta = rng.uniform(0.0, 2.0 * np.pi, n)
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)  # (n, 2)


def _walk(
    rng: np.random.Generator, start: np.ndarray, angle: float, curvature: float, length: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """Tortuous curve: (N, 2) points spaced ``step`` apart and their (N,) headings."""
    n = max(int(length / step), 2)
    thetas = angle + np.cumsum(curvature * step + rng.normal(0.0, 0.03, n))
    points = start + np.cumsum(step * np.stack([np.cos(thetas), np.sin(thetas)], axis=1), axis=0)
    return points, thetas


def _splat(points: np.ndarray, size: int) -> np.ndarray:
    """Bilinear histogram (H, W) of (N, 2) points (x, y); points outside are dropped."""
    x0, y0 = np.floor(points[:, 0]), np.floor(points[:, 1])
    fx, fy = points[:, 0] - x0, points[:, 1] - y0
    density = np.zeros(size * size, dtype=np.float64)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xs, ys = x0 + dx, y0 + dy
        ok = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
        density += np.bincount((ys[ok] * size + xs[ok]).astype(np.int64), weight[ok], size * size)
    return density.reshape(size, size).astype(np.float32)


def _blobs(
    size: int,
    centres: np.ndarray,
    radii: np.ndarray,
    edge: float | np.ndarray,
    rng: np.random.Generator | None = None,
    irregularity: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Union of (optionally irregular) discs: coverage (H, W) in [0, 1] and mask (H, W) bool.

    Args:
        size: Image side.
        centres: (N, 2) blob centres (x, y).
        radii: (N,) radii in pixels.
        edge: Edge softness in pixels, scalar or (N,); a wide edge gives a dome.
        rng: Generator for outline irregularity (needed when ``irregularity`` > 0).
        irregularity: Amplitude of the random outline modulation.
    """
    cover = np.zeros((size, size), dtype=np.float32)
    mask = np.zeros((size, size), dtype=bool)
    edges = np.broadcast_to(np.asarray(edge, dtype=np.float32), (len(centres),))
    yy, xx = pixel_grid(size, size)
    for centre, radius, width in zip(centres, radii, edges):
        win = window(centre, 1.6 * radius + width + 1.0, size, size)
        if win is None:
            continue
        dx, dy = xx[win] - centre[0], yy[win] - centre[1]
        rho = np.hypot(dx, dy)
        if irregularity > 0.0:
            outline = modulated_radius(np.arctan2(dy, dx), radius, radial_profile(rng, irregularity))
        else:
            outline = radius
        sdf = rho - outline
        cover[win] = np.maximum(cover[win], soft_inside(sdf, width))
        mask[win] |= sdf <= 0.0
        col, row = int(round(float(centre[0]))), int(round(float(centre[1])))
        if 0 <= col < size and 0 <= row < size:  # tiny blobs keep at least their centre pixel
            mask[row, col] = True
    return cover, mask


def _blend(image: np.ndarray, alpha: np.ndarray, colour: tuple[float, float, float]) -> None:
    """Alpha-blends a flat colour over the (3, H, W) image in place; alpha is (H, W)."""
    image *= 1.0 - alpha[None]
    image += alpha[None] * np.asarray(colour, dtype=np.float32)[:, None, None]
