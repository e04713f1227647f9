"""``benchmarks/gpu.sh --dry-run``: every step of the GPU script runs on the CPU at tiny sizes (the CUDA-only
checks are listed as skipped) and prints its one table."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("bash") is None, reason="gpu.sh is a bash script")
def test_the_gpu_script_dry_run_prints_its_table(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("\ncheck")[1].splitlines()[1:]
    rows = {line[:58].strip(): line for line in table}
    assert "no GPU (dry run on the CPU)" in result.stdout
    assert sum(" skip " in line and "needs CUDA" in line for line in table) == 3  # flash bf16, efficient x2
    math_rows = [line for name, line in rows.items() if name.startswith("parity: math")]
    assert len(math_rows) == 2 and all(" ok " in line and "masked rows zero: True" in line for line in math_rows)
    assert sum(name.startswith("attention fwd+bwd") for name in rows) == 4
    trained = [line for name, line in rows.items() if name.startswith(("char LM", "Multi30k"))]
    assert len(trained) == 2
    for line in trained:  # trained (data present) or skipped with the reason
        assert (" ok " in line and ("validation loss" in line or "test BLEU" in line)) or "../shared/data" in line


def test_without_a_gpu_the_script_says_so() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--only", "parity"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "--dry-run" in result.stderr
