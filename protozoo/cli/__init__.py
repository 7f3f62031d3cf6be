"""``protozoo`` command line: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import sys

from protozoo.cli import demo, evaluate, explain, info, list_cmd, train

SUBCOMMANDS = {"list": list_cmd, "info": info, "train": train, "evaluate": evaluate, "explain": explain, "demo": demo}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="protozoo", description="A zoo of interpretable prototype networks.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        module.add_parser(subparsers, name)
    args = parser.parse_args(argv)
    try:
        return SUBCOMMANDS[args.command].run(args) or 0
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
    except (ValueError, FileNotFoundError) as err:
        print(f"protozoo {args.command}: error: {err}", file=sys.stderr)
        return 2
