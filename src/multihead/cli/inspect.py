"""The ``multihead inspect`` command: pictures, head statistics, rollout/flow and an HTML view of the attention
of one text. A thin shell over :mod:`multihead.inspect`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from multihead.errors import ConfigError

__all__ = ["add_inspect_commands", "inspect_text"]


def inspect_text(
    model_dir: str | Path,
    text: str,
    out: str | Path,
    *,
    html: bool = False,
    rollout: bool = False,
    layers: list[int] | None = None,
    heads: list[int] | None = None,
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    teacher_forced: bool = False,
) -> dict[str, Any]:
    """Write the pictures (PNG and SVG), ``statistics.json`` and, if asked, ``rollout`` and ``attention.html``.

    A translation model's attention is captured while it decodes (its own beam search, following the
    chosen beam) unless ``teacher_forced``. Returns a summary: the title, the files and the patterned heads.
    """
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder; expected a folder (new or existing) for the "
                          "pictures, statistics.json and attention.html")
    if rollout and (layers is not None or heads is not None):
        raise ConfigError("--rollout needs every layer and head (rollout averages the heads of all layers); "
                          f"drop --layers {layers} / --heads {heads}")
    from multihead.inspect.html_view import AttentionView
    from multihead.inspect.pictures import plot_alignment, plot_head_grid, plot_rollout, plot_statistics
    from multihead.inspect.rollout import attention_flow, attention_rollout
    from multihead.inspect.statistics import head_statistics
    from multihead.inspect.texts import attention_for_text

    maps = attention_for_text(model_dir, text, layers=layers, heads=heads, num_beams=num_beams,
                              max_new_tokens=max_new_tokens, teacher_forced=teacher_forced)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for stack, kind in maps.groups():
        plot_head_grid(maps, stack, kind, path=folder / f"heads-{stack}-{kind}")
        written += [folder / f"heads-{stack}-{kind}.{suffix}" for suffix in ("png", "svg")]
    if any(kind == "cross" for _, kind in maps.groups()):
        plot_alignment(maps, path=folder / "alignment")
        written += [folder / f"alignment.{suffix}" for suffix in ("png", "svg")]
    statistics = head_statistics(maps)
    plot_statistics(statistics, path=folder / "statistics", title=maps.title)
    written += [folder / f"statistics.{suffix}" for suffix in ("png", "svg")]
    patterned = [label for group in statistics for label in group.labelled_heads()]
    report: dict[str, Any] = {
        "title": maps.title, "tokens": maps.tokens, "heads": list(maps.heads), "patterned_heads": patterned,
        "statistics": [{"stack": g.stack, "kind": g.kind, "layers": list(g.layers),
                        **{name: _rounded(getattr(g, name)) for name in
                           ("entropy", "distance", "special", "previous", "offset", "offset_share")}}
                       for g in statistics],
    }
    if rollout:
        stack = "encoder" if "encoder" in maps.tokens else "decoder"
        stack_layers = [maps.weights[site] for site in maps.layers(stack, "self")]
        rolled, flow = attention_rollout(stack_layers), attention_flow(stack_layers)
        plot_rollout(maps.tokens[stack], rolled, flow, raw=stack_layers[-1].mean(dim=0), path=folder / "rollout",
                     title=f"{stack} self-attention over {len(stack_layers)} layers")
        written += [folder / f"rollout.{suffix}" for suffix in ("png", "svg")]
        report["rollout"] = {"stack": stack, "rollout": _rounded(rolled), "flow": _rounded(flow)}
    if html:
        written.append(AttentionView(maps).save(folder / "attention.html"))
    statistics_file = folder / "statistics.json"
    statistics_file.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    report["files"] = [str(path) for path in [*written, statistics_file]]
    return report


def _rounded(values: Any) -> list[Any]:
    return [[None if value != value else round(value, 4) for value in row] for row in values.tolist()]


def _inspect(args: argparse.Namespace) -> int:
    report = inspect_text(args.model_dir, args.text, args.out, html=args.html, rollout=args.rollout,
                          layers=args.layers, heads=args.heads, num_beams=args.num_beams,
                          max_new_tokens=args.max_new_tokens, teacher_forced=args.teacher_forced)
    print(report["title"])
    for label in report["patterned_heads"]:
        print(f"  {label}")
    for file in report["files"]:
        print(f"wrote {file}")
    return 0


def add_inspect_commands(commands: Any) -> None:
    """Add ``inspect`` to the ``multihead`` sub-command parser."""
    inspect = commands.add_parser(
        "inspect", help="pictures, head statistics, rollout and an HTML view of the attention of one text")
    inspect.add_argument("model_dir", help="a classifier, language model or translation model directory")
    inspect.add_argument("text", help="the text to read (a translation model translates it first)")
    inspect.add_argument("--out", required=True, help="folder for the pictures, statistics.json and attention.html")
    inspect.add_argument("--html", action="store_true", help="also write attention.html (head view and model view)")
    inspect.add_argument("--rollout", action="store_true", help="also attention rollout and flow over the layers")
    inspect.add_argument("--layers", type=int, nargs="+", metavar="N", help="layers to capture (default all)")
    inspect.add_argument("--heads", type=int, nargs="+", metavar="N", help="heads to capture (default all)")
    inspect.add_argument("--num-beams", type=int, help="beams for decoding (translation default 4, LM 1)")
    inspect.add_argument("--max-new-tokens", type=int,
                         help="output length limit (translation: the model's; language model: 0 = prompt only)")
    inspect.add_argument("--teacher-forced", action="store_true",
                         help="for generated outputs: one forward pass over the output instead of capture during "
                              "generation")
    inspect.set_defaults(run=_inspect)
