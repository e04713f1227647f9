"""Smoke run of ``benchmarks/hf_compare.py --quick`` in-process: it runs end to end, prints its three tables
with ratios, and our outputs equal ``transformers``' on both decoding tables."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

pytest.importorskip("transformers", reason="the benchmark compares against Hugging Face transformers")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hf_compare.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hf_compare_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_quick_comparison_runs(capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    try:
        results = load_benchmark().main(["--quick", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert out.startswith("machine:") and "1 threads" in out and "transformers" in out
    ratios = re.findall(r"\d\.\d\dx", out)
    # 2 encoder rows, 2 GPT-2 batches with and without transposed weights, 1 beam row; and 4 ceilings
    assert len(ratios) == 11, out
    assert out.count("ceiling: transformers spends") == 4
    shares = [results["encoder"][0]["theirs_matrix_share"], results["translation"]["theirs_matrix_share"],
              *(r["theirs_matrix_share"] for r in results["lm"])]
    assert all(0.0 < share <= 1.0 for share in shares)
    assert len(results["encoder"]) == 2 and [r["batch"] for r in results["lm"]] == [1, 2]
    assert all(r["same"] and r["same_transposed"] for r in results["lm"]) and results["translation"]["same"]
    assert "goals: encoder >= 1.2x" in out
