"""The task registry: every name resolves to its Task, unknown names and bad model directories are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multihead.errors import CheckpointError, ConfigError
from multihead.tasks.registry import Task, TaskResult, get_task, model_task, task_names, task_of_model


def test_every_registered_name_resolves_to_its_task() -> None:
    names = task_names()
    assert {"classification", "translation", "language-model"} <= set(names)
    for name in names:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name
        assert callable(task.train) and callable(task.evaluate) and callable(task.report_lines)


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown task 'poetry'; known tasks: classification"):
        get_task("poetry")


def test_model_task_reads_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"task": "translation"}))
    assert model_task(tmp_path) == "translation"
    assert task_of_model(tmp_path).name == "translation"
    (tmp_path / "config.json").write_text(json.dumps({}))
    assert model_task(tmp_path) == "classification"  # directories from before tasks were recorded


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe"])
def test_model_task_refuses_bad_config_json(tmp_path: Path, content: str) -> None:
    (tmp_path / "config.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(CheckpointError, match=r"config\.json"):
        model_task(tmp_path)


def test_model_task_needs_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="expected a model directory"):
        model_task(tmp_path / "missing")


def _result(**changes: object) -> TaskResult:
    values = {"task": "classification", "output_dir": Path("runs/x"), "seconds": 12.4, "best_step": 300,
              "metric": "accuracy", "best_validation": 0.8125}
    return TaskResult(**{**values, **changes})  # type: ignore[arg-type]


def test_result_lines_summarise_training_and_suggest_next_steps() -> None:
    lines = get_task("classification").result_lines(_result())
    assert lines[0] == "trained in 12 s; best validation accuracy 0.8125 at step 300; model: runs/x/best"
    assert any(line.startswith("next: multihead predict runs/x/best") for line in lines)


def test_result_lines_say_an_interrupted_run_stopped_and_how_to_resume() -> None:
    lines = get_task("language-model").result_lines(_result(interrupted=True, best_step=None, best_validation=None))
    assert lines[0].startswith("stopped early (interrupted) in 12 s; best validation accuracy none at step "
                               "(never validated)")
    assert any("--resume" in line for line in lines) and not any(line.startswith("next:") for line in lines)
