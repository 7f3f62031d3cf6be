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
