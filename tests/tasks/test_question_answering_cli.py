"""``multihead train``/``eval``/``answer`` on a question-answering recipe, in-process, on a small real SQuAD sample:
files, reports, predictions in the official format, and bad QA files as one ``file:line`` error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multihead.cli.main import main
from multihead.data import data_root
from multihead.data.squad import QAExample, squad
from multihead.tasks.qa_model import QAModel, answer_questions


def write_jsonl(path: Path, examples: list[QAExample]) -> Path:
    path.write_text("".join(json.dumps({"id": e.id, "context": e.context, "question": e.question,
                                        "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers]})
                            + "\n" for e in examples), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        root = data_root()
    except FileNotFoundError as error:
        pytest.skip(f"no data root: {error}")
    if not (root / "squad" / "dev-v1.1.json.gz").is_file():
        pytest.skip(f"{root / 'squad'} is absent (the SQuAD v1.1 files of data/README.md)")
    splits = squad(root)
    folder = tmp_path_factory.mktemp("qa")
    write_jsonl(folder / "train.jsonl", splits["train"][:24])
    write_jsonl(folder / "validation.jsonl", splits["validation"][:8])
    write_jsonl(folder / "dev.jsonl", splits["test"][:6])  # several answers per question
    (folder / "qa.yaml").write_text(
        "task: question-answering\noutput_dir: run\n"
        "data: {train: train.jsonl, validation: validation.jsonl, test: dev.jsonl, max_length: 96, doc_stride: 24}\n"
        "tokenizer: {kind: wordpiece, vocab_size: 600, min_frequency: 1}\n"
        "model: {preset: tiny, d_model: 32, n_heads: 2, n_layers: 1, d_ff: 64, max_length: 96}\n"
        "training: {steps: 3, batch_size: 8, lr: 1.0e-3, eval_every: 3, metric: f1, progress: false}\n",
        encoding="utf-8")
    return folder


def test_train_eval_and_answer_from_the_command_line(trained: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained)
    assert main(["train", "qa.yaml", "--output-dir", str(trained / "run")]) == 0
    printed = capsys.readouterr().out
    assert "train 24 validation 8 test 6 questions" in printed and "best validation f1" in printed
    assert "test split (reported once" in printed and "questions 6 (split test; SQuAD v1.1 official scoring)" in printed
    best = trained / "run" / "best"
    saved = json.loads((best / "config.json").read_text())
    assert saved["task"] == "question-answering" and saved["architecture"] == "SpanExtractor"
    assert saved["qa"] == {"max_length": 96, "doc_stride": 24, "max_question_tokens": 64, "max_answer_tokens": 30}
    assert (trained / "run" / "last" / "model.safetensors").is_file()
    # resumable: two more steps continue from last/ (its tokenizer, weights, optimiser and data position)
    log = trained / "run" / "metrics.jsonl"
    before = len(log.read_text().splitlines())
    assert main(["train", "qa.yaml", "--output-dir", str(trained / "run"), "--resume", "--no-test",
                 "--set", "training.steps=5", "--set", "training.eval_every=5", "--set", "training.log_every=1"]) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()[before:]]
    assert records[0] == {"time": records[0]["time"], "step": 3, "precision": "fp32", "device": "cpu"}
    assert [record["step"] for record in records[1:]] == [4, 5, 5]
    assert "best validation f1" in capsys.readouterr().out

    assert main(["eval", str(best), "--split", "validation", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 8 and report["split"] == "validation" and 0 <= report["f1"] <= 100
    assert report["windows"] >= 8 and "predictions" not in report

    assert main(["answer", str(best), "--data", "dev.jsonl", "--out", "predictions.json"]) == 0
    assert "6 answers written to predictions.json" in capsys.readouterr().out
    predictions = json.loads((trained / "predictions.json").read_text())
    model = QAModel.load(best)
    lines = [json.loads(line) for line in (trained / "dev.jsonl").read_text().splitlines()]
    assert set(predictions) == {line["id"] for line in lines}
    for line in lines:  # every prediction is a span of its own context
        assert predictions[line["id"]] and predictions[line["id"]] in line["context"]
    assert main(["answer", str(best), "--data", "dev.jsonl", "--out", "predictions.json"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err

    context = lines[0]["context"]
    assert main(["answer", str(best), "--question", lines[0]["question"], "--context", context, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert context[found["start"]:found["end"]] == found["answer"] == predictions[lines[0]["id"]]
    (expected,) = model.answer([lines[0]["question"]], [context])
    assert expected is not None and found["score"] == pytest.approx(expected.score, abs=1e-4)
    assert answer_questions(best, [lines[0]["question"]], [context])[0] == expected


def test_bad_qa_files_fail_with_one_located_line(trained: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    best = trained / "run" / "best"
    if not best.is_dir():
        pytest.skip("needs the model of test_train_eval_and_answer_from_the_command_line")
    good = (trained / "validation.jsonl").read_text().splitlines()
    record = json.loads(good[1])
    record["answers"][0]["answer_start"] += 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([good[0], json.dumps(record)]) + "\n", encoding="utf-8")
    assert main(["eval", str(best), str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"multihead eval: error: {bad}:2: answers[0]: answer_start ") and error.count("\n") == 1
    del record["question"]
    bad.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert main(["answer", str(best), "--data", str(bad), "--out", str(tmp_path / "p.json")]) == 2
    assert f"{bad}:1: no 'question' key" in capsys.readouterr().err
    assert main(["answer", str(best), "--question", "Who?"]) == 2
    assert "--context TEXT or --context-file FILE" in capsys.readouterr().err
    assert main(["answer", str(trained / "missing"), "--question", "Who?", "--context", "x"]) == 2
