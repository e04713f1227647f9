"""The generation commands of ``multihead``: ``translate``, ``generate``, ``summarize``, and ``eval`` for
sequence-to-sequence models and language models. A thin shell over :mod:`multihead.tasks`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from multihead.data.errors import DataError
from multihead.errors import ConfigError

__all__ = ["add_generation_commands", "texts_from_arguments"]


def _decoding_options(parser: argparse.ArgumentParser, *, beams: int) -> None:
    group = parser.add_argument_group("decoding")
    group.add_argument("--num-beams", type=int, default=beams, help=f"beam size (default {beams}; 1 = greedy)")
    group.add_argument("--length-penalty", type=float, help="beam score = log p / length**this")
    group.add_argument("--max-new-tokens", type=int, help="tokens to generate at most")
    group.add_argument("--do-sample", action="store_true", help="sample instead of searching")
    group.add_argument("--temperature", type=float, help="sampling temperature (default 1.0)")
    group.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    group.add_argument("--top-p", type=float, help="sample among the smallest set of tokens with this mass")
    group.add_argument("--repetition-penalty", type=float, help="> 1 discourages tokens already generated")
    group.add_argument("--no-repeat-ngram-size", type=int, help="forbid repeating an n-gram of this size")
    group.add_argument("--min-new-tokens", type=int, help="no end of sequence before this many tokens")
    group.add_argument("--num-return-sequences", type=int, help="n-best size or number of samples")
    group.add_argument("--seed", type=int, help="seed of the sampler (repeatable samples)")
    group.add_argument("--stop", action="append", metavar="TEXT", help="stop when this text appears (repeatable)")
    group.add_argument("--stream", action="store_true", help="print the text as it is decoded")
    group.add_argument("--runtime", default="torch", choices=["torch", "onnx"], help="onnx: MODEL_DIR is a folder "
                       "written by `multihead export --format onnx`, run on onnxruntime (default torch)")
    group.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                       help="bfloat16: weights and activations in bfloat16 (1.5x faster beam search on CPUs with AMX; "
                            "outputs may differ at near-ties)")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"num_beams": args.num_beams, "length_penalty": args.length_penalty,
               "max_new_tokens": args.max_new_tokens, "do_sample": args.do_sample or None,
               "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
               "repetition_penalty": args.repetition_penalty, "num_return_sequences": args.num_return_sequences,
               "no_repeat_ngram_size": args.no_repeat_ngram_size, "min_new_tokens": args.min_new_tokens,
               "seed": args.seed, "stop_strings": tuple(args.stop) if args.stop else None}
    if args.do_sample and args.num_beams != 1:
        raise ConfigError("--do-sample samples one token at a time; use it with --num-beams 1")
    if args.runtime == "onnx" and args.dtype != "float32":
        raise ConfigError("--dtype bfloat16 runs on the torch runtime; the ONNX graphs are float32")
    return {key: value for key, value in options.items() if value is not None}


def texts_from_arguments(args: argparse.Namespace, *, action: str = "do") -> list[str]:
    """``args.texts`` plus the non-empty lines of ``args.file``; an error when there is nothing to ``action``."""
    texts = list(args.texts)
    if args.file:
        path = Path(args.file)
        if path.is_dir():
            raise ConfigError(f"--file {path}: is a folder; expected a text file with one text a line")
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file; expected one text a line")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise DataError(f"not UTF-8 text ({error.reason} at byte {error.start}); expected one text a line",
                            path=path) from None
        texts += [line.rstrip("\n") for line in lines if line.strip()]
    if not texts:
        raise ConfigError(f"nothing to {action}: give TEXT arguments or --file FILE")
    return texts


def _print_stream(updates: Iterator[str]) -> None:
    """Print each update's new tail; when the text changes before the printed part (beam search), reprint."""
    shown = ""
    for text in updates:
        if text.startswith(shown):
            sys.stdout.write(text[len(shown):])
        else:
            sys.stdout.write("\n" + text)
        sys.stdout.flush()
        shown = text
    sys.stdout.write("\n")


def _translate(args: argparse.Namespace) -> int:
    from multihead.tasks.seq2seq_eval import load_seq2seq

    options = _options(args)  # option errors before the model is read
    if args.runtime == "onnx":
        from multihead.export import load_onnx_translator

        model = load_onnx_translator(args.model_dir)
    else:
        model = load_seq2seq(args.model_dir, dtype=args.dtype)  # type: ignore[assignment]
    config = model.generation_config(**options)
    texts = texts_from_arguments(args)
    if args.stream:
        for text in texts:
            _print_stream(model.stream(text, generation=config))
        return 0
    for output in model(texts, generation=config):
        print(output)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from multihead.tasks.text_generator import load_text_generator

    options = _options(args)
    if args.chat is not None:  # one chat turn in the model's chat template
        from multihead.cli.chat import chat_once
        from multihead.errors import ConfigError

        if args.prompt:
            raise ConfigError("--prompt continues a text and --chat sends a chat message; give one of them")
        if args.runtime == "onnx":
            raise ConfigError("--chat runs on the torch runtime only; leave out --runtime onnx")
        if args.dtype != "float32":
            raise ConfigError("--chat decodes in float32; leave out --dtype")
        return chat_once(args.model_dir, args.chat, system=args.system, options=options, stream=args.stream)
    if args.runtime == "onnx":
        from multihead.export import load_onnx_text_generator

        generator = load_onnx_text_generator(args.model_dir)
    else:
        generator = load_text_generator(args.model_dir, dtype=args.dtype)  # type: ignore[assignment]
    config = generator.generation_config(**options)
    if args.stream:
        sys.stdout.write(args.prompt)
        _print_stream(generator.stream(args.prompt, generation=config))
        return 0
    for continuation in generator([args.prompt], generation=config)[0]:
        print(args.prompt + continuation)
        print("-" * 40)
    return 0


def _summarize(args: argparse.Namespace) -> int:
    texts = texts_from_arguments(args)
    if args.runtime == "onnx":  # exported summarisers are encoder-decoders
        return _translate(args)
    from multihead.tasks.registry import task_of_model

    task = task_of_model(args.model_dir)
    if task.summarize is None:  # an encoder-decoder: summaries are decoded like translations
        return _translate(args)
    if args.dtype != "float32":
        raise ConfigError(f"{args.model_dir}: an extractive summariser scores sentences in float32; leave out --dtype")
    for summary in task.summarize(args.model_dir, texts, sentences=args.sentences):
        print(summary)
    return 0


def add_generation_commands(commands: Any) -> None:
    """Add ``translate``, ``generate`` and ``summarize`` to the ``multihead`` sub-command parser."""
    translate = commands.add_parser("translate", help="translate texts with a saved encoder-decoder")
    translate.add_argument("model_dir", help="a model directory (e.g. runs/translate-multi30k/best)")
    translate.add_argument("texts", nargs="*", metavar="TEXT", help="sentences to translate")
    translate.add_argument("--file", help="also translate every non-empty line of this file")
    _decoding_options(translate, beams=4)
    translate.set_defaults(run=_translate)

    generate = commands.add_parser("generate", help="continue a prompt with a saved language model")
    generate.add_argument("model_dir", help="a model directory (e.g. runs/lm-tinyshakespeare/best)")
    generate.add_argument("--prompt", default="", help="the text to continue (default: from scratch)")
    generate.add_argument("--chat", metavar="MESSAGE", help="send MESSAGE as one chat turn in the model's chat "
                          "template and print the reply (MODEL may then be a .gguf file or package:NAME)")
    generate.add_argument("--system", help="with --chat: the system prompt")
    _decoding_options(generate, beams=1)
    generate.set_defaults(run=_generate)

    summarize = commands.add_parser("summarize", help="summarise articles (extractive or abstractive model)")
    summarize.add_argument("model_dir", help="a model directory (e.g. runs/summarize-bbc-extractive/best)")
    summarize.add_argument("texts", nargs="*", metavar="TEXT", help="articles to summarise")
    summarize.add_argument("--file", help="also summarise every non-empty line of this file (one article a line)")
    summarize.add_argument("--sentences", type=int, help="extractive: sentences to pick (default: the model's)")
    _decoding_options(summarize, beams=4)
    summarize.set_defaults(run=_summarize)
