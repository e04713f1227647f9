"""The CLI's top-level handler: bad input is one line and exit 2, a bug keeps its traceback, a closed pipe ends
quietly, Ctrl-C ends with 130 (and a training run saves ``last/`` and says it was interrupted)."""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multihead.cli import main
from multihead.errors import ConfigError

RECIPE = """\
task: classification
output_dir: {output}
data: {{train: {train}, max_length: 8}}
tokenizer: {{kind: word, vocab_size: 40, min_frequency: 1}}
model: {{preset: tiny, d_model: 16, n_heads: 2, n_layers: 1, d_ff: 32{extra}}}
training: {{steps: {steps}, batch_size: 4, eval_every: {eval_every}, log_every: 1, progress: false}}
"""


def _table(folder: Path) -> Path:
    rows = ["text\tlabel"] + [f"{'good fun' if i % 2 else 'bad dull'} film {i % 5}\t{'pos' if i % 2 else 'neg'}"
                              for i in range(40)]
    path = folder / "train.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _with_command(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make ``multihead predict`` raise ``error``."""
    module = importlib.import_module("multihead.cli.main")  # the package's ``main`` is the function

    def build() -> argparse.ArgumentParser:
        parser = original()
        for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
            action.choices["predict"].set_defaults(run=lambda args: (_ for _ in ()).throw(error))
        return parser

    original = module.build_parser
    monkeypatch.setattr(module, "build_parser", build)


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    for bug in (ValueError("an internal invariant broke"), TypeError("wrong call"), KeyError("x"),
                ModuleNotFoundError("No module named 'multihead.gone'", name="multihead.gone")):
        _with_command(monkeypatch, bug)
        with pytest.raises(type(bug)):
            main(["predict", "model", "text"])


@pytest.mark.parametrize(("error", "says"), [
    (ConfigError("training.lr must be positive"), "training.lr must be positive"),
    (FileNotFoundError(2, "No such file or directory", "data/train.tsv"), "data/train.tsv: No such file or directory"),
    (PermissionError(13, "Permission denied", "/root/x"), "/root/x: Permission denied"),
    (OSError(28, "No space left on device"), "No space left on device"),
    (ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib"), "pip install matplotlib"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "invalid start byte"),
])
def test_bad_input_is_one_line(error: BaseException, says: str, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    _with_command(monkeypatch, error)
    assert main(["predict", "model", "text"]) == 2
    err = capsys.readouterr().err
    assert err == f"multihead predict: error: {err.split('error: ', 1)[1]}" and err.count("\n") == 1
    assert says in err


def test_other_os_errors_are_bugs(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_command(monkeypatch, OSError(5, "Input/output error"))
    with pytest.raises(OSError, match="Input/output"):
        main(["predict", "model", "text"])


def test_ctrl_c_outside_training_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _with_command(monkeypatch, KeyboardInterrupt())
    assert main(["predict", "model", "text"]) == 130
    assert capsys.readouterr().err == "multihead predict: interrupted\n"


class _ClosedPipe(io.StringIO):
    """stdout after the reader went away (``| head -1``): every write fails."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_ends_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from hostile import classifier_dir

    model = classifier_dir(tmp_path / "model")
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["predict", str(model), "a good film", "a bad film"]) == 141
    assert capsys.readouterr().err == ""


def test_eval_piped_into_head_exits_quietly(tmp_path: Path) -> None:
    from hostile import classifier_dir

    model = classifier_dir(tmp_path / "model")
    texts = tmp_path / "texts.txt"
    texts.write_text(("a good film " * 200 + "\n") * 300)  # 720 kB out: more than a pipe and its buffers hold
    command = f"{sys.executable} -m multihead predict {model} --file {texts} | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.count("\n") == 1 and done.stderr == "", done.stderr[-2000:]
    assert done.returncode == 141


def test_sigint_stops_training_saves_last_and_exits_130(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(RECIPE.format(output=tmp_path / "run", train=_table(tmp_path), extra="", steps=1_000_000,
                                    eval_every=1_000_000))
    process = subprocess.Popen([sys.executable, "-m", "multihead", "train", str(config), "--no-test"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    log = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (log.is_file() and log.read_text().count("\n") >= 2) and process.poll() is None:
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=240)
    assert process.returncode == 130, err[-3000:]
    assert "interrupted" in out and "--resume" in out and "Traceback" not in err
    last = tmp_path / "run" / "last"
    assert (last / "model.safetensors").is_file()
    assert json.loads((last / "training_state.json").read_text())["counters"]["step"] >= 1


def test_an_ensemble_summary_names_its_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(RECIPE.format(output=tmp_path / "run", train=_table(tmp_path), extra=", ensemble: 2",
                                    steps=2, eval_every=2))
    assert main(["train", str(config), "--no-test"]) == 0
    out = capsys.readouterr().out
    summary = next(line for line in out.splitlines() if line.startswith("trained in"))
    assert "None" not in summary and "never validated" not in summary
    assert "ensemble of 2" in out and str(tmp_path / "run" / "members") in out
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [record.get("member") for record in records[:2]] == [0, 1] and "ensemble" in records[-1]
