"""Smoke run of ``benchmarks/train_classifier.py --quick``: it runs end to end and prints its tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_train_classifier_quick_runs() -> None:
    pytest.importorskip("transformers", reason="the benchmark compares against Hugging Face transformers")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_classifier.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "HF attention: sdpa" in out
    assert "threads" in out and "torch" in out  # the machine line
    for precision in ("fp32", "bf16 autocast"):
        rows = [line for line in out.splitlines() if line.strip().startswith(precision)]
        assert len(rows) == 2, out  # training and inference
        assert all(row.rstrip().endswith("x") for row in rows), out
