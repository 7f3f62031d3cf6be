"""The benchmark's rows on disk: one JSON file per row, written atomically, so a killed benchmark
continues where it stopped; ``results.json`` and ``results.csv`` gathered from them."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from protozoo.benchmark.options import BenchmarkOptions
from protozoo.serialization import write_json, write_text

DEFINITION = "benchmark.json"


def row_key(backbone: str, init: str, method: str) -> str:
    """A file-name-safe key (``gradcam++`` -> ``gradcampp``)."""
    return re.sub(r"[^\w.-]", "_", f"{backbone}__{init}__{method.replace('+', 'p')}")


class RowStore:
    """``DIR/rows/<key>.json``, and ``DIR/benchmark.json``: the options a resumed run must match."""

    def __init__(self, out: Path, options: BenchmarkOptions):
        self.out, self.folder = Path(out), Path(out) / "rows"
        self.options = options

    def open(self) -> RowStore:
        """Create the folders; refuse a folder of a benchmark with other options (naming them)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        definition = self.out / DEFINITION
        wanted = _comparable(self.options.to_dict())
        if definition.is_file():
            saved = _comparable(json.loads(definition.read_text()))
            changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
            if changed:
                raise ValueError(
                    f"{str(self.out)!r} holds a benchmark with other options ({', '.join(changed)}: "
                    + "; ".join(f"{k} was {saved.get(k)!r}, now {wanted.get(k)!r}" for k in changed)
                    + "); use another --out, or the same options to continue it"
                )
        else:
            write_json(self.options.to_dict(), definition)
        return self

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> dict[str, Any]:
        return json.loads(self.path(key).read_text())

    def put(self, key: str, row: dict[str, Any]) -> None:
        write_json(row, self.path(key))


def _comparable(options: dict[str, Any]) -> dict[str, Any]:
    """What a row depends on: every option but the lists of rows (backbones, inits, methods) may grow."""
    return {k: v for k, v in options.items() if k not in ("backbones", "inits", "methods")}


CSV_SKIP = ("options",)


def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    """``results.json`` (the rows, each with its options and seed) and ``results.csv`` (options as JSON)."""
    write_json(rows, out / "results.json")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    write_text(buffer.getvalue(), out / "results.csv")
