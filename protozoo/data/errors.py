"""The errors of data loading, each naming the file and what was expected."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CorruptFileError", "DatasetLayoutError", "bad_line"]


class DatasetLayoutError(FileNotFoundError):
    """A file or folder a loader needs is missing; the message names it and the expected layout."""


class CorruptFileError(ValueError):
    """A file exists but cannot be decoded; the message names the file.

    Attributes:
        path: The unreadable file.
    """

    def __init__(self, path: str | Path, reason: object) -> None:
        self.path = str(path)
        super().__init__(f"cannot decode {path}: {reason}")


def bad_line(path: str | Path, line_number: int, line: str, expected: str) -> CorruptFileError:
    """The error for a line of a dataset's text file that cannot be read: the file, the line, what was expected."""
    return CorruptFileError(path, f"line {line_number} {line.strip()[:80]!r} is not {expected}")
