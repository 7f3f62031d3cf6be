"""Generated ground-truth benchmarks: no files needed, every sample built on the fly.

- :class:`SyntheticMammo`: two-view (CC/MLO) mammograms, normal / benign / malignant.
- :class:`SyntheticFundus`: colour fundus photographs with five lesion types and an
  AMD label derived from them by a documented rule.
- :class:`SyntheticParts`: CUB-like birds with 15 keypoints; classes differ on a few parts.

See docs/synthetic.md.
"""

from ._common import SPLIT_CODES, SyntheticDataset, marker_box
from .fundus import AMD_CLASSES, FUNDUS_LESIONS, SyntheticFundus, amd_rule
from .mammo import MAMMO_CLASSES, MAMMO_FINDINGS, MAMMO_VIEWS, SyntheticMammo
from .parts import PART_NAMES, SyntheticParts

__all__ = [
    "AMD_CLASSES",
    "FUNDUS_LESIONS",
    "MAMMO_CLASSES",
    "MAMMO_FINDINGS",
    "MAMMO_VIEWS",
    "PART_NAMES",
    "SPLIT_CODES",
    "SyntheticDataset",
    "SyntheticFundus",
    "SyntheticMammo",
    "SyntheticParts",
    "amd_rule",
    "marker_box",
]
