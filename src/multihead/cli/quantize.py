"""``multihead quantize``: weight-only int8/int4 copy of a model directory; a thin shell over
:func:`multihead.quantize.directory.quantize_model_dir`."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_quantize_commands"]


def _quantize(args: argparse.Namespace) -> int:
    from multihead.quantize.directory import quantize_model_dir

    written = quantize_model_dir(args.model_dir, args.out_dir, bits=args.bits, group_size=args.group_size,
                                 skip=args.skip or (), head_bits=None if args.head_bits == "same" else
                                 int(args.head_bits), activations=args.activations, overwrite=args.overwrite)
    kind = "weight-only" if args.activations == "none" else "int8 layers quantize their inputs per call"
    print(f"wrote int{args.bits} model directory {written} ({kind})")
    return 0


def add_quantize_commands(commands: Any) -> None:
    """Add ``quantize`` to the ``multihead`` sub-command parser."""
    quantize = commands.add_parser(
        "quantize", help="weight-only int8 (per channel) or int4 (grouped) copy of a model directory for CPU decoding")
    quantize.add_argument("model_dir", help="a multihead model directory (a .gguf file: multihead convert it first)")
    quantize.add_argument("out_dir", help="where the quantized model directory goes")
    quantize.add_argument("--bits", type=int, choices=[8, 4], required=True, help="8 or 4")
    quantize.add_argument("--group-size", type=int, choices=[32, 64, 128, 256],
                          help="int4: input features per scale (default 32)")
    quantize.add_argument("--head-bits", choices=["8", "4", "same"], default="8",
                          help="bits of the output layer (default 8: int4 there costs much more accuracy)")
    quantize.add_argument("--skip", action="append", metavar="PATTERN",
                          help="leave layers matching this name or pattern in float, e.g. 'lm_head' (repeatable)")
    quantize.add_argument("--activations", choices=["none", "dynamic"], default="none",
                          help="dynamic: int8 layers also quantize their inputs per call and multiply in integers "
                               "(faster on CPUs, slightly less exact; recorded in the directory)")
    quantize.add_argument("--overwrite", action="store_true",
                          help="write into an existing folder that holds other files too")
    quantize.set_defaults(run=_quantize)
