"""``protozoo`` command line: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time

from protozoo.cli import benchmark, demo, evaluate, explain, info, list_cmd, push, train

SUBCOMMANDS = {
    "list": list_cmd,
    "info": info,
    "train": train,
    "push": push,
    "evaluate": evaluate,
    "explain": explain,
    "demo": demo,
    "benchmark": benchmark,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="protozoo", description="A zoo of interpretable prototype networks.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        module.add_parser(subparsers, name)
    args = parser.parse_args(argv)
    configure_threads()
    from protozoo.train.checkpoint import RunLockedError

    try:
        return SUBCOMMANDS[args.command].run(args) or 0
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; 130 as a shell reports SIGINT
        print(f"protozoo {args.command}: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, RunLockedError) as err:
        print(f"protozoo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # an optional dependency the subcommand needs: which extra to install
        from protozoo.extras import missing_extra

        if missing_extra(err) is None:
            raise
        print(f"protozoo {args.command}: error: {missing_extra(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        folder = os.path.dirname(err.filename) if err.filename else getattr(args, "out", None) or "."
        print(
            f"protozoo {args.command}: error: no space left on the device of {str(folder)!r}; free space there "
            f"(or choose another folder){_resume_hint(args, ' and')}",
            file=sys.stderr,
        )
        return 1


def _resume_hint(args: argparse.Namespace, joiner: str = ";") -> str:
    """For the subcommands that train (``train``, ``demo``): how to continue from the last checkpoint."""
    if not hasattr(args, "resume") or getattr(args, "out", None) is None:
        return ""
    return f"{joiner} the run in {str(args.out)!r} can be resumed from its last checkpoint with --resume"


def configure_threads() -> int:
    """Set torch's intra-op threads to the CPU cores that are idle now; returns the count.

    PyTorch starts one OpenMP thread per core, and its threads spin at each barrier: on a machine
    where other processes already keep some cores busy, two threads on two shared cores ran a
    training step 4-8x slower than one thread (the demo: 786 s against 293 s with
    ``OMP_NUM_THREADS=1``). So the CLI takes the cores its affinity allows, less those busy over
    the last quarter second (``/proc/stat``), at least one. ``PROTOZOO_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` overrides the choice. Inter-op threads are set to 1 (protozoo runs no
    parallel graph branches), and DataLoader workers already run single-threaded (PyTorch sets one
    thread in each worker).
    """
    import torch

    chosen = os.environ.get("PROTOZOO_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    threads = int(chosen) if chosen and chosen.isdigit() and int(chosen) > 0 else idle_cores()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first inter-op work; then leave it
        pass
    return threads


def idle_cores(window: float = 0.25) -> int:
    """The cores of this process's affinity that no other process kept busy during ``window`` seconds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        first = _cpu_times()
        time.sleep(window)
        second = _cpu_times()
    except OSError:  # no /proc/stat (not Linux): all cores
        return cores
    busy = [b - a for a, b in zip(first, second)]  # (busy, total) jiffies over the window, all CPUs
    total_cpus = os.cpu_count() or cores
    busy_cpus = busy[0] / busy[1] * total_cpus if busy[1] > 0 else 0.0
    return max(1, min(cores, round(total_cpus - busy_cpus)))


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)
