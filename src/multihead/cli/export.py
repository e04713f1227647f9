"""``multihead export MODEL_DIR OUT --format onnx``: a thin shell over :func:`multihead.export.export_onnx`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_export_commands"]


def _export(args: argparse.Namespace) -> int:
    from multihead.export import export_onnx

    out = export_onnx(args.model_dir, args.out, opset=args.opset, overwrite=args.overwrite,
                      log=lambda line: print(line, file=sys.stderr))
    print(f"wrote ONNX graphs, tokenizer and config to {out}; run them with --runtime onnx, e.g. "
          f"multihead predict {out} \"a text\" --runtime onnx")
    return 0


def add_export_commands(commands: Any) -> None:
    """Add ``export`` to the ``multihead`` sub-command parser."""
    export = commands.add_parser("export", help="export a model directory for deployment (ONNX graphs)")
    export.add_argument("model_dir", help="a multihead model directory (classifier, encoder, language model or "
                        "encoder-decoder)")
    export.add_argument("out", help="the folder to write (graphs, onnx.json, tokenizer, labels, config)")
    export.add_argument("--format", default="onnx", choices=["onnx"], help="the format to write (default onnx)")
    export.add_argument("--opset", type=int, help="ONNX opset (default: the one the installed torch recommends)")
    export.add_argument("--overwrite", action="store_true", help="write into an OUT that holds other files too, "
                        "replacing only the exported files there (the others stay)")
    export.set_defaults(run=_export)
