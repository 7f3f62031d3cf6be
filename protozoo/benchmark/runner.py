"""``protozoo.benchmark.run``: every backbone x initialisation trained, every method scored, a row each."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protozoo.benchmark.maps import explained_model
from protozoo.benchmark.models import InitUnavailable, train_pair
from protozoo.benchmark.options import BenchmarkOptions
from protozoo.benchmark.rows import RowStore, row_key, write_results


def run(
    out: str | Path,
    options: BenchmarkOptions | None = None,
    *,
    preset: str | None = None,
    progress: bool = True,
    report: bool = True,
    log: Callable[[str], None] = print,
    **changes: Any,
) -> list[dict[str, Any]]:
    """Run (or continue) the explanation benchmark into ``out``.

    Args:
        out: Folder of ``results.json``, ``results.csv``, ``report.html``, ``figures/``, the rows
            (``rows/``, one file each: a rerun skips the rows that are there) and the trained
            models (``models/<backbone>__<init>/``: a killed training resumes from its checkpoint).
        options: The benchmark (default :class:`BenchmarkOptions`, or the preset's).
        preset: ``"quick"``: see :data:`protozoo.benchmark.options.PRESETS`.
        progress: Progress bars of the training epochs.
        report: Write the figures and ``report.html`` at the end.
        log: Where the progress lines go.
        **changes: Options on top (``backbones=("resnet18",)``, ``epochs=1``...).

    Returns:
        The rows of ``results.json``, one per backbone x init x method.

    Under ``torchrun`` every process trains (data-parallel, as ``protozoo train``) and the main
    process scores and writes.
    """
    from protozoo.train.distributed import DistContext

    if options is None:
        options = BenchmarkOptions.preset(preset, **changes) if preset else BenchmarkOptions(**changes)
    elif changes:
        options = options.replace(**changes)
    out = Path(out)
    ctx = DistContext.from_env()
    if not ctx.is_main:  # one voice under torchrun
        log = _silent
    store = RowStore(out, options)
    if ctx.is_main:
        store.open()
    ctx.barrier()
    pairs = [(backbone, init) for backbone in options.backbones for init in options.inits]
    started = time.perf_counter()
    for number, (backbone, init) in enumerate(pairs, start=1):
        head = f"[{number}/{len(pairs)}] {backbone} {init}"
        missing = [m for m in options.methods if not store.has(row_key(backbone, init, m))]
        if not missing:
            log(f"{head}: all {len(options.methods)} rows done, skipped")
            continue
        begun = time.perf_counter()
        log(f"{head}: training ProtoPNet and classifier ({options.epochs} epochs, {options.image_size} px)")
        rows = _pair_rows(options, backbone, init, out, missing, progress, log, ctx)
        if ctx.is_main:
            for method, row in rows.items():
                store.put(row_key(backbone, init, method), row)
        ctx.barrier()
        log(
            f"{head}: {len(missing)} rows in {time.perf_counter() - begun:.1f}s (total {time.perf_counter() - started:.1f}s)"
        )
    rows = [store.get(row_key(b, i, m)) for b, i in pairs for m in options.methods] if ctx.is_main else []
    if ctx.is_main:
        write_results(rows, out)
        if report:
            from protozoo.benchmark.report import write_report

            write_report(rows, out)
        log(f"wrote {out / 'results.json'} ({len(rows)} rows), results.csv" + (", report.html" if report else ""))
    return rows


def _pair_rows(
    options: BenchmarkOptions, backbone: str, init: str, out: Path, methods: list[str], progress: bool, log, ctx
) -> dict[str, dict[str, Any]]:
    """The rows of one backbone x init: scored, or saying why there is nothing to score."""
    base = {
        "backbone": backbone,
        "init": init,
        "freeze_stages": options.freeze_stages,
        "shortcut": options.shortcut,
        "seed": options.seed,
        "options": options.to_dict(),
    }
    begun = time.perf_counter()
    try:
        pair = train_pair(options, backbone, init, out / "models" / f"{backbone}__{init}", progress=progress, log=log)
    except InitUnavailable as err:
        reason = str(err).splitlines()[0]
        log(f"  {backbone} {init}: not run: {reason}")
        return {
            m: base
            | {"method": m, "model": explained_model(m), "status": "unavailable", "init_source": None, "note": str(err)}
            for m in methods
        }
    trained = time.perf_counter() - begun
    if not ctx.is_main:
        return {}
    from protozoo.benchmark.scoring import score_pair

    scores = score_pair(pair, options, methods)
    seconds = round(time.perf_counter() - begun, 1)
    return {
        m: base
        | {"method": m, "status": "ok", "init_source": pair.init_source, "frozen_tensors": pair.frozen_tensors}
        | scores[m]
        | {"train_seconds": round(trained, 1), "seconds": seconds}
        for m in methods
    }


def _silent(_: str) -> None:
    pass
