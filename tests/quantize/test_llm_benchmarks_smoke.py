"""Smoke runs of ``benchmarks/llm_decode.py --quick`` and ``benchmarks/llm_perplexity.py --quick`` in-process: a
tiny random Llama (and its ``transformers`` twin) goes through every engine and both tables print."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_quick_llm_decode_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers", reason="the benchmark compares against transformers")
    threads = torch.get_num_threads()
    try:
        results = load("llm_decode").main(["--quick", "--threads", "1", "--batches", "1,2", "--new-tokens", "5",
                                           "--repeats", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "machine:" in out and "torch kernels" in out and "32-token chat prompts" in out
    assert set(results) == {"1x1", "1x2"}
    for rows in results.values():
        assert set(rows) == {"ours fp32", "ours int8", "ours int4 g32", "transformers fp32"}
        assert rows["ours fp32"]["agreement"] == 1.0 and rows["transformers fp32"]["agreement"] == 1.0
        assert all(row["tokens_per_s"] > 0 and row["first_token_ms"] > 0 for row in rows.values())
    assert out.count("vs transformers") == 2 and "1.00x" in out


def test_quick_llm_perplexity_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers", reason="the benchmark compares against transformers")
    threads = torch.get_num_threads()
    try:
        results = load("llm_perplexity").main(["--quick", "--window", "32"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "windows of 32 tokens" in out
    assert abs(results["transformers fp32"] / results["ours fp32"] - 1) < 1e-4  # the same weights
    assert {"ours int8", "ours int8 kernel", "ours int4 g32", "ours int4 g32 kernel"} <= set(results)
