"""The clock of the benchmarks: wall time by default; ``--clock cpu`` reads this process's CPU time.

On a machine shared with other jobs the wall time of a run grows with their load, and the ratios
drift with it. The process's CPU time (``time.process_time``: user + system of all its threads)
leaves out the time the process waits for a core, so at ``--threads 1`` a ratio measured under
load is close to the quiet machine's. It counts no DataLoader worker processes (the benchmarks load
in-process) and counts the spinning of idle OpenMP threads at ``--threads 2``.
"""

from __future__ import annotations

import argparse
import time

_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_chosen = ["wall"]


def add_clock_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clock",
        choices=sorted(_CLOCKS),
        default="wall",
        help="wall time, or this process's CPU time (robust to other jobs' load)",
    )


def set_clock(name: str) -> None:
    _chosen[0] = name


def now() -> float:
    """Seconds on the chosen clock."""
    return _CLOCKS[_chosen[0]]()


def describe() -> str:
    return "wall time" if _chosen[0] == "wall" else "CPU time of this process"
