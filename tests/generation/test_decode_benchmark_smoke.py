"""Smoke run of ``benchmarks/decode.py --quick`` in-process: it runs end to end and prints its tables."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "decode.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("decode_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_quick_decode_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        results = load_benchmark().main(["--quick", "--threads", "1", "--repeats", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "machine:" in out and "threads" in out and "torch" in out
    lm_rows = [line for line in out.splitlines() if re.match(r"\s*\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+x  \w", line)]
    assert len(lm_rows) == 2, out
    assert "real generate runs" in lm_rows[0] and "integrated" in lm_rows[1]
    assert "beam-2" in out and out.count("cached/no-cache") == 2
    assert re.search(r"^\s+[\d.]+\s+[\d.]+\s+[\d.]+x$", out, flags=re.MULTILINE), out  # the beam row
    assert [row["batch"] for row in results["lm"]] == [1, 4]
    assert all(row["cached"] > 0 and row["uncached"] > 0 for row in results["lm"])
    assert results["seq2seq"]["ratio"] > 0


def test_bad_options_are_refused() -> None:
    with pytest.raises(SystemExit):
        load_benchmark().main(["--quick", "--threads", "0"])
