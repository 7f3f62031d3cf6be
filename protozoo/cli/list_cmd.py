"""``protozoo list [PATTERN] [--pretrained]``: registered models."""

from __future__ import annotations

import argparse

from protozoo.registry import list_aliases, list_models


def add_parser(subparsers, name: str) -> None:
    parser = subparsers.add_parser(name, help="list registered models (fnmatch pattern)")
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'protopnet_res*'")
    parser.add_argument("--pretrained", action="store_true", help="only models with trained weights (arch.tag)")


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, pretrained=args.pretrained)
    for name in names:
        print(name)
    aliases = {a: t for a, t in list_aliases().items() if t in names or t.partition(".")[0] in names}
    for alias, target in sorted(aliases.items()):
        print(f"{alias} -> {target}")
    if not names:
        kind = "trained models" if args.pretrained else "models"
        print(f"no {kind} match {args.pattern!r}")
    return 0
