"""The one lesion vocabulary: names of the AMD-related fundus lesions, shared by datasets and models.

Every dataset reports its lesions under these names (ADAM's folder names are mapped on reading),
so a model trained on one lesion dataset reads another's labels by name, never by position.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ADAM_FOLDERS", "FUNDUS_LESIONS", "check_lesion_names"]

# The lesion types the built-in synthetic-fundus data draws, and the lesion model's default.
FUNDUS_LESIONS: tuple[str, ...] = ("drusen", "haemorrhage", "hard_exudate", "geographic_atrophy", "neovascular_scar")

# ADAM / iChallenge-AMD ``Lesion_Masks/<folder>`` -> protozoo's name, in protozoo's order.
ADAM_FOLDERS: dict[str, str] = {
    "drusen": "drusen",
    "haemorrhage": "hemorrhage",
    "hard_exudate": "exudate",
    "neovascular_scar": "scar",
    "other": "others",
}


def check_lesion_names(model_names: Sequence[str], data_names: Sequence[str], where: str) -> None:
    """Raise a ValueError naming the difference when a dataset's lesions are not the model's, in order."""
    if list(model_names) == list(data_names):
        return
    missing = [n for n in model_names if n not in data_names]
    extra = [n for n in data_names if n not in model_names]
    detail = (f"the model's {missing} are not in the data" if missing else "") + (
        ("; " if missing else "") + f"the data's {extra} are not in the model" if extra else ""
    )
    raise ValueError(
        f"{where} has lesions {list(data_names)} but the model reads {list(model_names)}"
        f" ({detail or 'another order'}); train a lesion model on this data (its lesion_names come from the "
        "dataset), or pass data with the model's lesions"
    )
