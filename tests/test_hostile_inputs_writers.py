"""Writers never lose a user's files: a destination that is not one of our model directories is refused (or, with
``--overwrite``, only our files there are replaced), a full disk is one line, and ``--out`` at a file is refused."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from safetensors import SafetensorError

from hostile import bert_like_encoder_dir, classifier_dir, fails, snapshot, user_folder
from multihead.atomic import atomic_directory, foreign_entries
from multihead.cli import main
from multihead.errors import ConfigError
from multihead.model_dir import load_model_dir


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return classifier_dir(tmp_path_factory.mktemp("classifier") / "model")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bert_like_encoder_dir(tmp_path_factory.mktemp("encoder") / "model")


@pytest.mark.parametrize("to", ["multihead", "hf"])
def test_convert_refuses_a_users_folder_and_leaves_it_alone(tmp_path: Path, encoder: Path, to: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = user_folder(tmp_path / "dest")
    before = snapshot(folder)
    fails(capsys, ["convert", str(encoder), str(folder), "--to", to],
          says=("not a model directory's", "chapters", "thesis.txt", "--overwrite"))
    assert snapshot(folder) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dest"]  # no staging folder left behind


def test_a_plain_unknown_file_is_refused_too(tmp_path: Path, encoder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "dest"
    folder.mkdir()
    (folder / "notes.md").write_text("mine\n")
    fails(capsys, ["convert", str(encoder), str(folder), "--to", "multihead"], says="notes.md")
    assert snapshot(folder) == {"notes.md": snapshot(folder / "notes.md")["."]}


@pytest.mark.parametrize("to", ["multihead", "hf"])
def test_overwrite_replaces_only_our_files(tmp_path: Path, encoder: Path, to: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = user_folder(tmp_path / "dest")
    (folder / "labels.json").write_text('{"labels": ["stale", "classes"]}')  # ours by name: stale, so removed
    before = snapshot(folder)
    assert main(["convert", str(encoder), str(folder), "--to", to, "--overwrite"]) == 0
    after = snapshot(folder)
    for name in ("thesis.txt", "chapters/one.txt"):
        assert after[name] == before[name]
    assert "labels.json" not in after and {"config.json", "model.safetensors"} <= set(after)
    assert foreign_entries(folder) == ["chapters", "thesis.txt"]
    if to == "multihead":
        assert type(load_model_dir(folder).model).__name__ == "Encoder"


def test_a_users_config_json_is_not_replaced_even_with_overwrite(tmp_path: Path, encoder: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "dest"
    folder.mkdir()
    (folder / "config.json").write_text('{"theme": "dark"}')  # an app's settings, not a model's
    before = snapshot(folder)
    fails(capsys, ["convert", str(encoder), str(folder), "--to", "multihead", "--overwrite"], says="config.json")
    assert snapshot(folder) == before


def test_our_model_directory_is_still_replaced_as_a_whole(tmp_path: Path, encoder: Path, classifier: Path) -> None:
    destination = tmp_path / "dest"
    assert main(["convert", str(classifier), str(destination), "--to", "multihead"]) == 0
    assert (destination / "labels.json").is_file()
    assert main(["convert", str(encoder), str(destination), "--to", "multihead"]) == 0
    assert not (destination / "labels.json").exists()  # the old model's file went with it
    assert type(load_model_dir(destination).model).__name__ == "Encoder"


def test_a_file_at_the_destination_is_refused(tmp_path: Path, encoder: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "results.csv"
    target.write_text("a,b\n1,2\n")
    for extra in ([], ["--overwrite"]):
        fails(capsys, ["convert", str(encoder), str(target), "--to", "multihead", *extra], says="not a directory")
    assert target.read_text() == "a,b\n1,2\n"


def test_atomic_directory_refuses_before_writing_and_keeps_a_training_runs_neighbours(tmp_path: Path) -> None:
    best = user_folder(tmp_path / "best")
    with pytest.raises(ConfigError, match="not a model directory's"), atomic_directory(best) as staging:
        raise AssertionError(f"the writer ran in {staging}")  # pragma: no cover - the refusal comes first
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best"]


def test_a_full_disk_is_one_line_and_the_old_version_stays(tmp_path: Path, encoder: Path, classifier: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    destination = tmp_path / "dest"
    assert main(["convert", str(classifier), str(destination), "--to", "multihead"]) == 0
    before = snapshot(destination)

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("multihead.model_dir.save_model", full)
    fails(capsys, ["convert", str(encoder), str(destination), "--to", "multihead"],
          says=("no space left on device", str(destination)))
    assert snapshot(destination) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dest"]

    def full_os(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("multihead.model_dir.save_model", full_os)
    fails(capsys, ["convert", str(encoder), str(destination), "--to", "multihead"], says="no space left on device")
    assert snapshot(destination) == before


def test_inspect_out_at_an_existing_file(tmp_path: Path, classifier: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("keep me\n")
    fails(capsys, ["inspect", str(classifier), "a good film", "--out", str(target)], says="not a folder")
    assert target.read_text() == "keep me\n"
