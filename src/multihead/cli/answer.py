"""``multihead answer``: extractive question answering with a saved model, one question or a whole SQuAD file.
A thin shell over :mod:`multihead.tasks.question_answering`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from multihead.data.errors import DataError
from multihead.errors import ConfigError

__all__ = ["add_answer_commands"]


def _context(args: argparse.Namespace) -> str:
    if (args.context is None) == (args.context_file is None):
        raise ConfigError("give the passage with --context TEXT or --context-file FILE (one of them)")
    if args.context is not None:
        return str(args.context)
    path = Path(args.context_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected the passage as UTF-8 text")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text ({error.reason} at byte {error.start}); expected the passage",
                        path=path) from None


def _answer(args: argparse.Namespace) -> int:
    from multihead.tasks.qa_model import answer_file, answer_questions

    if args.data is not None:
        if args.question is not None or args.context is not None or args.context_file is not None:
            raise ConfigError("--data answers a whole file; drop --question, --context and --context-file")
        if args.out is None:
            raise ConfigError("--data needs --out FILE for the predictions (JSON, question id -> answer)")
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise ConfigError(f"--out {out}: exists; pass --overwrite to replace it")
        if args.zero_shot:
            predictions, scores = _zero_shot_file(args)
        else:
            if args.sample is not None:
                raise ConfigError("--sample needs --zero-shot (a QA model answers the whole file quickly)")
            predictions, scores = answer_file(args.model_dir, args.data, max_answer_tokens=args.max_answer_tokens)
        from multihead.atomic import write_json_atomic

        write_json_atomic(out, predictions)
        print(f"{len(predictions):,} answers written to {out}")
        if scores is not None:
            print(f"exact match {scores['exact_match']:.2f}   F1 {scores['f1']:.2f}   (SQuAD v1.1 official scoring "
                  f"against the file's answers)")
        return 0
    if args.question is None:
        raise ConfigError("give --question QUESTION with --context/--context-file, or --data FILE --out FILE")
    context = _context(args)
    if args.zero_shot:
        from multihead.chat import load_chat_model
        from multihead.data.squad import QAExample
        from multihead.tasks.qa_chat import chat_answers

        example = QAExample(id="question", question=args.question, context=context, answers=())
        answer = chat_answers(load_chat_model(args.model_dir), [example])["question"]
        print(json.dumps({"answer": answer}, ensure_ascii=False) if args.json else answer)
        return 0
    (found,) = answer_questions(args.model_dir, [args.question], [context], max_answer_tokens=args.max_answer_tokens)
    record: dict[str, Any] = {"answer": None, "start": None, "end": None, "score": None}
    if found is not None:
        record = {"answer": found.text, "start": found.start, "end": found.end, "score": round(found.score, 4)}
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        print(record["answer"] if record["answer"] is not None else "(no answer: the context has no tokens)")
    return 0


def _zero_shot_file(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, Any] | None]:
    """A chat model's answers to the file's questions (a seeded ``--sample`` of them), with a progress bar."""
    from tqdm import tqdm

    from multihead.chat import load_chat_model
    from multihead.data.squad import read_qa_file, squad_references
    from multihead.squad_metric import squad_scores
    from multihead.tasks.qa_chat import chat_answers, sample_questions

    examples = read_qa_file(args.data, require_answers=False)
    if args.sample is not None:
        if args.sample < 1:
            raise ConfigError(f"--sample must be a positive number of questions, got {args.sample}")
        examples = sample_questions(examples, args.sample, seed=args.seed)
    chat = load_chat_model(args.model_dir)
    with tqdm(total=len(examples), unit="question", dynamic_ncols=True) as bar:
        predictions = chat_answers(chat, examples, progress=lambda *_: bar.update())
    labelled = all(example.answers for example in examples)
    return predictions, squad_scores(predictions, squad_references(examples)) if labelled else None


def add_answer_commands(commands: Any) -> None:
    """Register ``answer`` on the ``multihead`` sub-command parser."""
    answer = commands.add_parser(
        "answer", help="answer a question from a passage with a question-answering model (or a whole SQuAD file)",
        description="Find the answer span in the passage. One question: --question with --context or "
                    "--context-file. A file (SQuAD JSON, or JSON lines with context/question[/answers/id]): "
                    "--data FILE --out predictions.json, the official predictions format.")
    answer.add_argument("model_dir", help="a question-answering model directory (e.g. runs/qa-squad-minilm/best); "
                                    "with --zero-shot a chat model")
    answer.add_argument("--question", help="the question")
    answer.add_argument("--context", help="the passage, as text")
    answer.add_argument("--context-file", help="the passage, from a UTF-8 text file")
    answer.add_argument("--data", help="answer every question of this SQuAD JSON / JSON lines file")
    answer.add_argument("--out", help="with --data: where the predictions JSON goes")
    answer.add_argument("--overwrite", action="store_true", help="with --out: replace an existing file")
    answer.add_argument("--max-answer-tokens", type=int, help="longest answer in tokens (default: the model's, 30)")
    answer.add_argument("--json", action="store_true", help="one question: print answer, character span and score")
    answer.add_argument("--zero-shot", action="store_true",
                        help="MODEL is a chat model (a .gguf file, package:NAME or a chat model directory): it is "
                             "prompted with the passage and the question and its greedy reply is the answer")
    answer.add_argument("--sample", type=int, help="with --zero-shot --data: answer a seeded sample of N questions")
    answer.add_argument("--seed", type=int, default=0, help="with --sample: the sample's seed (default 0)")
    answer.set_defaults(run=_answer)
