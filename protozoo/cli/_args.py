"""Argument types shared by the subcommands: a zero or negative count is a flag error, never a default."""

from __future__ import annotations

import argparse


def at_least(least: int):
    """An argparse ``type`` for integers >= ``least``; argparse names the flag in its error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {least}, not {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be an integer >= {least}, not {value}")
        return value

    parse.__name__ = f"integer >= {least}"  # argparse's fallback wording
    return parse


positive_int = at_least(1)
nonnegative_int = at_least(0)


def add_data_option(parser: argparse.ArgumentParser, help_suffix: str = "") -> None:
    """The repeatable ``--data-option KEY=VALUE`` flag (``args.data_option``), as ``protozoo train`` takes it."""
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. num_classes=3, crop_to_bbox=true)" + help_suffix,
    )


def parse_key_values(pairs: list[str], flag: str = "--data-option") -> dict[str, object]:
    """The pairs of a repeatable KEY=VALUE option (``--data-option``, ``--model-option``):
    ``["num_classes=3", "crop_to_bbox=true"]`` -> ``{"num_classes": 3, "crop_to_bbox": True}`` (JSON values;
    a value that is not JSON stays a string). ``flag`` names the option in the error for a pair without ``=``."""
    import json

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {pair!r} is not KEY=VALUE (e.g. {flag} input_blur=1.0)")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a plain string
    return options
