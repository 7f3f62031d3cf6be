"""Synthetic CUB-like birds with 15 keypoints; classes differ on a few parts only.

A bird is drawn in a canonical frame (facing +x, its right side towards the
viewer, y down, body centre at the origin, about 1.7 units from tail to beak),
then posed by rotation, scale, translation and a horizontal flip. A flipped bird
faces left and shows its left side, so the near-side keypoints are named "left"
after a flip (anatomical naming, as in CUB). The far eye and far wing are hidden
by the head and body; parts out of frame or under a foreground occluder are
invisible too.

Each class is a fixed "signature" of 2-3 (slot, value) pairs, e.g. red crown and
barred wings; every other slot gets a per-sample muted nuisance look shared by all
classes, or (with probability ``decoy_prob``) a vivid decoy value that no class uses
on that slot. Class designs are fixed by ``class_seed`` and independent of the dataset
seed; class ``c`` has the same design for every ``num_classes > c``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._common import Item, OnError, SyntheticDataset, Transform, fractal_noise, pixel_grid, soft_inside, window

PART_NAMES: list[str] = [
    "back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg",
    "left wing", "nape", "right eye", "right leg", "right wing", "tail", "throat",
]  # fmt: skip

VIVID: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1),
    "yellow": (0.95, 0.85, 0.1),
    "blue": (0.15, 0.35, 0.9),
    "black": (0.06, 0.06, 0.06),
    "white": (0.95, 0.95, 0.92),
    "orange": (0.95, 0.5, 0.05),
}
# slot -> signature values; a value is "colour", "colour-pattern" or "length-colour".
SLOTS: dict[str, list[str]] = {
    "crown": ["red", "yellow", "blue", "black", "white"],
    "nape": ["white", "red", "black", "yellow"],
    "throat": ["black", "white", "yellow", "red"],
    "breast": ["red", "yellow", "orange", "white", "blue"],
    "belly": ["black-streaked", "white", "yellow", "black-spotted"],
    "wing": ["white-barred", "yellow-barred", "black-spotted", "blue", "red"],
    "tail": ["long-black", "long-blue", "short-white", "long-red"],
    "beak": ["long-orange", "long-black", "short-yellow", "short-red"],
    "eye": ["white-ring", "yellow-ring", "red-ring", "blue-ring"],
    "legs": ["red", "yellow", "blue", "orange"],
}
SLOT_PARTS: dict[str, list[str]] = {
    "crown": ["crown", "forehead"],
    "nape": ["nape"],
    "throat": ["throat"],
    "breast": ["breast"],
    "belly": ["belly"],
    "wing": ["left wing", "right wing"],
    "tail": ["tail"],
    "beak": ["beak"],
    "eye": ["left eye", "right eye"],
    "legs": ["left leg", "right leg"],
}
_LENGTHS = {
    "beak": {"short": 0.09, "medium": 0.14, "long": 0.25},
    "tail": {"short": 0.12, "medium": 0.25, "long": 0.42},
}

# Canonical keypoints; "near"/"far" become "right"/"left" (or swapped after a flip).
_HEAD, _HEAD_R, _EYE, _BEAK_X = (0.55, -0.32), 0.17, (0.61, -0.31), 0.68
_KEYPOINTS = {
    "back": (-0.05, -0.24),
    "belly": (-0.02, 0.2),
    "breast": (0.3, 0.08),
    "crown": (0.53, -0.44),
    "forehead": (0.67, -0.41),
    "near eye": _EYE,
    "far eye": _EYE,
    "near leg": (0.06, 0.6),
    "far leg": (-0.08, 0.6),
    "near wing": (-0.1, -0.05),
    "far wing": (-0.2, -0.27),
    "nape": (0.4, -0.36),
    "throat": (0.58, -0.19),
}
_HIDDEN = ("far eye", "far wing")


def design_classes(num_classes: int, class_seed: int = 0) -> list[dict[str, str]]:
    """Signatures of the classes: each a dict of 2-3 slots -> values, all distinct.

    Classes are drawn sequentially from one stream, so a prefix does not depend on
    ``num_classes``.
    """
    rng = np.random.default_rng([class_seed, 7])
    designs: list[dict[str, str]] = []
    slots = list(SLOTS)
    while len(designs) < num_classes:
        chosen = rng.choice(len(slots), size=int(rng.integers(2, 4)), replace=False)
        design = {slots[i]: SLOTS[slots[i]][rng.integers(len(SLOTS[slots[i]]))] for i in sorted(chosen)}
        if design not in designs:
            designs.append(design)
    return designs


class SyntheticParts(SyntheticDataset):
    """CUB-like birds on clutter with 15 keypoints; classes differ on 2-3 parts.

    Item keys: ``image`` (3, H, W); ``label`` int; ``parts`` (15, 2) float pixel
    (x, y) in ``PART_NAMES`` order (pixel centres at integers; invisible parts keep
    the position they would have, possibly outside the image); ``parts_visible``
    (15,) bool; ``bbox`` (4,) float (x0, y0, x1, y1) of the visible bird;
    ``id`` str; ``shortcut_box`` (4,) int64; ``shortcut_label`` int.

    Attributes:
        class_attributes: Per class, its signature dict slot -> value (``SLOTS``).
        signature_parts: Per class, the ``PART_NAMES`` on which its signature lives.

    Args:
        split: "train", "val" or "test".
        image_size: Side of the square images in pixels.
        num_samples: Dataset length; None uses 512 / 128 / 256 for train / val / test.
        seed: Non-negative seed.
        shortcut: Probability of the shortcut tag (see ``SyntheticDataset``).
        transform: Optional callable applied to the item dict.
        val_fraction: Only 0 (the val split is generated).
        on_error: Accepted for the common signature.
        num_classes: Number of classes (2 to 40).
        class_seed: Seed of the class designs.
        num_distractors: Clutter shapes (leaves, twigs, random colours) behind the bird.
        occlusion: Probability of a foreground twig occluding part of the image.
        max_rotation: Maximum absolute in-plane rotation in degrees.
        colour_jitter: Std of the per-sample jitter of signature colours.
        decoy_prob: Probability that a non-signature slot gets a vivid "decoy" look
            that no class uses on that slot, so colours must be localised.
        noise_std: Std of the additive white noise.
    """

    name = "synthetic-parts"

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
        num_classes: int = 6,
        class_seed: int = 0,
        num_distractors: int = 8,
        occlusion: float = 0.25,
        max_rotation: float = 25.0,
        colour_jitter: float = 0.06,
        decoy_prob: float = 0.3,
        noise_std: float = 0.02,
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
        if not 2 <= num_classes <= 40:
            raise ValueError(f"num_classes must be in [2, 40], got {num_classes}")
        self.class_attributes = design_classes(num_classes, class_seed)
        self.signature_parts = [[p for slot in d for p in SLOT_PARTS[slot]] for d in self.class_attributes]
        self.classes = ["+".join(f"{v}_{s}" for s, v in d.items()) for d in self.class_attributes]
        self.num_distractors = int(num_distractors)
        self.occlusion = float(occlusion)
        self.max_rotation = float(max_rotation)
        self.colour_jitter = float(colour_jitter)
        self.decoy_prob = float(decoy_prob)
        self._decoys = {
            slot: [v for v in values if all(d.get(slot) != v for d in self.class_attributes)]
            for slot, values in SLOTS.items()
        }
        self.noise_std = float(noise_std)

    def generate(self, index: int, *, label: int | None = None) -> Item:
        """Builds item ``index``.

        Args:
            index: Sample index.
            label: If given, renders the same bird, pose and background as class
                ``label`` (only its signature parts change): a counterfactual.

        Returns:
            The item dict (transform not applied).
        """
        rng_label, rng_look, rng_pose, rng_scene, rng_noise, rng_marker = self._rngs(index, 6)
        size = self.image_size
        label = int(rng_label.integers(self.num_classes)) if label is None else int(label)
        image = _background(rng_scene, size, self.num_distractors)  # (3, H, W)
        looks = self._looks(rng_look, label)
        flip = rng_pose.random() < 0.5
        angle = np.deg2rad(rng_pose.uniform(-self.max_rotation, self.max_rotation))
        scale = size * float(rng_pose.uniform(0.3, 0.42))  # pixels per canonical unit
        shift = size * (0.5 + rng_pose.uniform(-0.2, 0.2, 2))
        pose = _Pose(shift, scale, angle, -1.0 if flip else 1.0)
        corners = pose.to_pixels(np.array([[-1.05, -0.55], [-1.05, 0.7], [1.0, -0.55], [1.0, 0.7]]))
        win = window(corners.mean(axis=0), np.abs(corners - corners.mean(axis=0)).max(), size, size)
        silhouette = np.zeros((size, size), dtype=np.float32)
        if win is not None:
            yy, xx = pixel_grid(size, size)
            u, v = pose.to_canonical(xx[win], yy[win])  # (h, w) each
            crop = image[:, win[0], win[1]]
            silhouette[win] = _draw_bird(crop, u, v, 1.0 / scale, looks)
        occluder = np.zeros((size, size), dtype=np.float32)
        if rng_scene.random() < self.occlusion:
            through = shift + 0.5 * scale * rng_scene.uniform(-1.0, 1.0, 2)  # across the bird
            occluder = _twig(rng_scene, size, size * float(rng_scene.uniform(0.04, 0.08)), through)
            _paint(image, occluder, _natural_colour(rng_scene))

        canonical = dict(_KEYPOINTS)
        canonical["beak"] = (_BEAK_X + looks["beak"][2] / 2.0, -0.31)
        canonical["tail"] = (-0.45 - looks["tail"][2] / 2.0, -0.05)
        near, far = ("left", "right") if flip else ("right", "left")
        names = {k.replace("near", near).replace("far", far): k for k in canonical}
        points = pose.to_pixels(np.array([canonical[names[p]] for p in PART_NAMES], dtype=np.float32))  # (15, 2)
        inside = np.all((points >= 0.0) & (points <= size - 1), axis=1)
        cols, rows = np.clip(np.round(points), 0, size - 1).astype(int).T
        visible = inside & (occluder[rows, cols] < 0.5) & np.array([names[p] not in _HIDDEN for p in PART_NAMES])

        image += self.noise_std * rng_noise.standard_normal(image.shape, dtype=np.float32)
        image = np.clip(image, 0.0, 1.0)
        shortcut = self._apply_shortcut(rng_marker, label, [image])
        return {
            "image": torch.from_numpy(image),
            "label": label,
            "parts": torch.from_numpy(points),
            "parts_visible": torch.from_numpy(visible),
            "bbox": torch.from_numpy(_bbox(silhouette * (1.0 - occluder) > 0.5)),
            "foreground": torch.from_numpy((silhouette > 0.5)[None].astype(np.float32)),  # the bird
            "id": self.sample_id(index),
            **shortcut,
        }

    def _looks(self, rng: np.random.Generator, label: int) -> dict[str, tuple[np.ndarray, str, float]]:
        """Per-slot (colour (3,), pattern, length): muted nuisance looks, decoys, then the signature."""
        body = np.clip(np.array([0.45, 0.38, 0.28]) + rng.uniform(-0.15, 0.15, 3), 0.15, 0.75)
        light = body + rng.uniform(0.3, 0.5) * (1.0 - body)
        looks = {
            "body": (body, "plain", 0.0),
            "light": (light, "plain", 0.0),
            "crown": (body * rng.uniform(0.8, 1.1), "plain", 0.0),
            "nape": (body, "plain", 0.0),
            "throat": (light, "plain", 0.0),
            "breast": (light, "plain", 0.0),
            "belly": (light * rng.uniform(0.9, 1.05), "plain", 0.0),
            "wing": (body * rng.uniform(0.6, 0.85), "plain", 0.0),
            "tail": (body * rng.uniform(0.55, 0.8), "plain", _LENGTHS["tail"]["medium"]),
            "beak": (np.array([0.35, 0.32, 0.3]), "plain", _LENGTHS["beak"]["medium"]),
            "eye": (body, "none", 0.0),
            "legs": (np.array([0.45, 0.36, 0.3]), "plain", 0.0),
        }
        signature = self.class_attributes[label]
        jitter = rng.normal(0.0, self.colour_jitter, (len(SLOTS), 3))
        decoy_draws, decoy_picks = rng.random(len(SLOTS)), rng.integers(0, 1 << 16, len(SLOTS))
        for i, slot in enumerate(SLOTS):
            if slot in signature:
                value = signature[slot]
            elif decoy_draws[i] < self.decoy_prob and self._decoys[slot]:
                value = self._decoys[slot][decoy_picks[i] % len(self._decoys[slot])]
            else:
                continue
            colour, pattern, length = looks[slot]
            for token in value.split("-"):
                if token in VIVID:
                    colour = np.array(VIVID[token]) + jitter[i]
                elif token in ("short", "long"):
                    length = _LENGTHS[slot][token]
                else:
                    pattern = token
            looks[slot] = (np.clip(colour, 0.0, 1.0), pattern, length)
        return looks


class _Pose:
    """Similarity transform canonical -> pixels with optional horizontal flip."""

    def __init__(self, shift: np.ndarray, scale: float, angle: float, flip: float) -> None:
        self.shift = shift.astype(np.float32)
        self.scale, self.flip = float(scale), float(flip)
        self.cos, self.sin = math.cos(angle), math.sin(angle)

    def to_pixels(self, q: np.ndarray) -> np.ndarray:
        x, y = self.flip * q[:, 0], q[:, 1]
        px = self.shift[0] + self.scale * (self.cos * x - self.sin * y)
        py = self.shift[1] + self.scale * (self.sin * x + self.cos * y)
        return np.stack([px, py], axis=1).astype(np.float32)

    def to_canonical(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = (px - self.shift[0]) / self.scale, (py - self.shift[1]) / self.scale
        return self.flip * (self.cos * dx + self.sin * dy), -self.sin * dx + self.cos * dy


def _ellipse(
    u: np.ndarray, v: np.ndarray, centre: tuple[float, float], a: float, b: float, rot: float = 0.0
) -> np.ndarray:
    """Approximate signed distance (canonical units) to a rotated ellipse."""
    du, dv = u - float(centre[0]), v - float(centre[1])
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    a, b = float(a), float(b)
    eu, ev = c * du + s * dv, -s * du + c * dv
    return (np.sqrt((eu / a) ** 2 + (ev / b) ** 2) - 1.0) * min(a, b)


def _capsule(u: np.ndarray, v: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], r: float) -> np.ndarray:
    """Signed distance to a segment of radius ``r``."""
    x0, y0, dx, dy = float(p0[0]), float(p0[1]), float(p1[0] - p0[0]), float(p1[1] - p0[1])
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.hypot(u - x0 - t * dx, v - y0 - t * dy) - float(r)


def _polygon(u: np.ndarray, v: np.ndarray, vertices: list[tuple[float, float]]) -> np.ndarray:
    """Signed distance (exact inside, lower bound outside) to a convex polygon."""
    pts = np.asarray(vertices, dtype=np.float32)
    edges = np.roll(pts, -1, axis=0) - pts
    area = np.sum(pts[:, 0] * np.roll(pts[:, 1], -1) - np.roll(pts[:, 0], -1) * pts[:, 1])
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) * np.sign(area)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    dist = [float(n[0]) * (u - float(p[0])) + float(n[1]) * (v - float(p[1])) for n, p in zip(normals, pts)]
    return np.max(dist, axis=0)


def _paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-composites ``colour`` (3,) or (3, H, W) over the (3, H, W) image in place."""
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 1:
        colour = colour[:, None, None]
    image *= 1.0 - alpha[None]
    image += alpha[None] * colour


def _draw_bird(image: np.ndarray, u: np.ndarray, v: np.ndarray, pixel: float, looks: dict) -> np.ndarray:
    """Draws the bird on the (3, H, W) image given canonical coordinates; returns its (H, W) coverage."""

    def cover(sdf: np.ndarray) -> np.ndarray:
        return soft_inside(sdf, pixel)

    def colour(slot: str, shade: float = 1.0) -> np.ndarray:
        return looks[slot][0] * shade

    silhouette = np.zeros_like(u)

    def paint(alpha: np.ndarray, col: np.ndarray) -> None:
        nonlocal silhouette
        _paint(image, alpha, col)
        silhouette = np.maximum(silhouette, alpha)

    for x, shade in ((-0.08, 0.75), (0.06, 1.0)):  # far leg, near leg
        foot = _capsule(u, v, (x - 0.05, 0.62), (x + 0.06, 0.62), 0.015)
        leg = np.minimum(_capsule(u, v, (x, 0.15), (x, 0.6), 0.02), foot)
        paint(cover(leg), colour("legs", shade))
    tail_end = -0.55 - looks["tail"][2]
    paint(cover(_polygon(u, v, [(-0.3, -0.1), (-0.3, 0.04), (tail_end, 0.08), (tail_end, -0.2)])), colour("tail"))
    body_sdf = np.minimum(_ellipse(u, v, (0.0, 0.0), 0.45, 0.26, -12.0), _ellipse(u, v, (0.4, -0.16), 0.16, 0.14))
    feathers = 1.0 + 0.06 * np.sin(40.0 * u + 10.0 * np.sin(25.0 * v))
    body = cover(body_sdf)
    paint(body, colour("body")[:, None, None] * feathers[None])
    paint(np.minimum(cover(_ellipse(u, v, (0.3, 0.05), 0.19, 0.17)), body), colour("breast"))
    belly = np.minimum(cover(_ellipse(u, v, (-0.03, 0.16), 0.26, 0.11)), body)
    belly_colour, pattern, _ = looks["belly"]
    if pattern == "plain":
        paint(belly, belly_colour)
    else:
        paint(belly, colour("light"))
        if pattern == "streaked":
            marks = np.abs(np.sin(u * np.pi / 0.06)) > 0.85
        else:
            marks = np.sin(u * np.pi / 0.05) * np.sin(v * np.pi / 0.05) > 0.7
        paint(belly * marks, belly_colour)
    wing_sdf = _ellipse(u, v, (-0.1, -0.05), 0.33, 0.14, -8.0)
    wing = cover(wing_sdf)
    wing_colour, pattern, _ = looks["wing"]
    if pattern == "plain":
        paint(wing, wing_colour)
    else:
        paint(wing, looks["body"][0] * 0.7)
        marks = np.sin(u * np.pi / 0.05) > 0.3 if pattern == "barred" else np.sin(u * 70.0) * np.sin(v * 70.0) > 0.5
        paint(wing * marks * (wing_sdf < -0.02), wing_colour)
    head = cover(_ellipse(u, v, _HEAD, _HEAD_R, _HEAD_R))
    paint(head, colour("body"))
    paint(np.minimum(head, cover(v + 0.37)), colour("crown"))
    paint(np.minimum(head, cover(_ellipse(u, v, (0.41, -0.3), 0.06, 0.11))), colour("nape"))
    paint(np.minimum(head, cover(_ellipse(u, v, (0.57, -0.2), 0.1, 0.06))), colour("throat"))
    if looks["eye"][1] == "ring":
        paint(cover(_ellipse(u, v, _EYE, 0.058, 0.058)), colour("eye"))
    paint(cover(_ellipse(u, v, _EYE, 0.032, 0.032)), np.array(VIVID["black"]))
    beak_tip = _BEAK_X + looks["beak"][2]
    paint(cover(_polygon(u, v, [(_BEAK_X - 0.02, -0.355), (_BEAK_X - 0.02, -0.265), (beak_tip, -0.3)])), colour("beak"))
    return silhouette


def _natural_colour(rng: np.random.Generator) -> np.ndarray:
    """Foliage, bark or sky colour."""
    palette = np.array([[0.25, 0.45, 0.2], [0.45, 0.35, 0.22], [0.55, 0.7, 0.85], [0.5, 0.55, 0.3]])
    return np.clip(palette[rng.integers(len(palette))] + rng.uniform(-0.1, 0.1, 3), 0.0, 1.0)


def _background(rng: np.random.Generator, size: int, num_distractors: int) -> np.ndarray:
    """Clutter: smooth coloured noise plus leaves and twigs of random colours; (3, H, W)."""
    base = _natural_colour(rng)[:, None, None]
    noise = fractal_noise(rng, (3, size, size), 2.5)
    image = np.clip(base + 0.04 * noise + 0.1 * noise[:1], 0.0, 1.0).astype(np.float32)
    yy, xx = pixel_grid(size, size)
    for _ in range(num_distractors):
        colour = rng.uniform(0.0, 1.0, 3) if rng.random() < 0.5 else _natural_colour(rng)
        if rng.random() < 0.6:  # leaf
            centre = rng.uniform(0.0, size, 2)
            a, b = size * rng.uniform(0.03, 0.12), size * rng.uniform(0.02, 0.06)
            win = window(centre, a + 2.0, size, size)
            if win is None:
                continue
            alpha = np.zeros((size, size), dtype=np.float32)
            alpha[win] = soft_inside(_ellipse(xx[win], yy[win], tuple(centre), a, b, rng.uniform(0.0, 180.0)), 1.0)
        else:
            alpha = _twig(rng, size, size * float(rng.uniform(0.01, 0.03)), rng.uniform(0.0, size, 2))
        _paint(image, alpha, colour)
    return image


def _twig(rng: np.random.Generator, size: int, width: float, through: np.ndarray) -> np.ndarray:
    """Coverage (H, W) of a straight twig through the point ``through`` (x, y), random direction."""
    yy, xx = pixel_grid(size, size)
    theta = rng.uniform(0.0, np.pi)
    half = size * np.array([np.cos(theta), np.sin(theta)]) * rng.uniform(0.3, 1.5, (2, 1))
    p0, p1 = through - half[0], through + half[1]
    return soft_inside(_capsule(xx, yy, tuple(p0), tuple(p1), width / 2.0), 1.0).astype(np.float32)


def _bbox(mask: np.ndarray) -> np.ndarray:
    """(4,) float32 (x0, y0, x1, y1) of a (H, W) bool mask; zeros when empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float32)
