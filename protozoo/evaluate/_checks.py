"""Argument checks shared by the evaluators: a score from out-of-range parameters is a wrong answer."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_dataset_fits", "check_range", "check_whole"]


def check_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    meaning: str = "",
) -> float:
    """``value`` as a float if it is a number in the interval, else a ValueError naming ``name`` and the interval."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}{f' ({meaning})' if meaning else ''}, got {value!r}")
    return float(value)


def check_whole(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` if it is a whole number >= ``minimum`` (or None when allowed), else a ValueError naming it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def check_dataset_fits(model: Any, dataset: Any) -> None:
    """The dataset's classes (and a lesion dataset's lesions) must be the model's (see ``Family.check_dataset``)."""
    from protozoo.family import family_of

    try:
        family = family_of(model)
    except TypeError:  # a plain classifier: nothing declared to compare
        return
    family.check_dataset(model, dataset)
