"""The ``multihead`` command, run in-process."""

from __future__ import annotations

import pytest

import multihead
from multihead.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert multihead.__version__ in capsys.readouterr().out


def test_demo_trains_and_decodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--steps", "40", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "held-out sequence accuracy" in out
    assert out.count(" -> ") == 5


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err
