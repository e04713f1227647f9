"""The ``multihead compare`` command: a thin shell over :func:`multihead.compare.run_compare`."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_compare_commands"]


def _compare(args: argparse.Namespace) -> int:
    from multihead.compare import load_compare, run_compare

    config = load_compare(args.config, args.set, output_dir=args.out)
    run_compare(config)
    return 0


def add_compare_commands(commands: Any) -> None:
    """Add ``compare`` to the ``multihead`` sub-command parser."""
    compare = commands.add_parser(
        "compare", help="train several architectures on the same data and budget; report quality, speed, memory")
    compare.add_argument("config", help="a compare config (YAML or TOML), e.g. configs/compare-mr.yaml")
    compare.add_argument("--out", help="output folder (default: the config's output_dir)")
    compare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a top-level key or section.key, e.g. measure.rounds=3 (repeatable)")
    compare.set_defaults(run=_compare)
