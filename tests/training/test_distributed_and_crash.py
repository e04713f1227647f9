"""Data-parallel training equals single-process training; a SIGKILL while saving loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from multihead.model_dir import load_model_dir

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(arguments: list[str], tmp_path: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    completed = subprocess.run(arguments, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_cpu_processes_match_one_process(tmp_path: Path) -> None:
    """DDP (gloo, 2 processes, half of each global batch each) gives the weights of 1 process on the same batches."""
    worker = str(HERE / "ddp_worker.py")
    _run([sys.executable, worker, str(tmp_path / "single")], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
          "--master_port", str(_free_port()), worker, str(tmp_path / "ddp")], tmp_path)
    single, ddp = load_file(str(tmp_path / "single" / "weights.safetensors")), load_file(
        str(tmp_path / "ddp" / "weights.safetensors"))
    assert single.keys() == ddp.keys()
    for name in single:
        torch.testing.assert_close(ddp[name], single[name], atol=1e-5, rtol=1e-5, msg=name)
    assert not torch.equal(single["classifier.weight"], torch.zeros_like(single["classifier.weight"]))


SAVER = """
import sys, torch
from multihead.model_dir import save_model_dir
from multihead.models import SequenceClassifier, TransformerConfig
model = SequenceClassifier(TransformerConfig(vocab_size=20000, d_model=256, n_heads=4, n_layers=4), n_classes=2)
version = 0
while True:
    version += 1
    save_model_dir(sys.argv[1], model=model, extra={"version": version})
    print(version, flush=True)
"""


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_sigkill_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path: Path, delay: float) -> None:
    target = tmp_path / "checkpoint"
    process = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # one complete save exists before the kill
        assert first.strip() == "1"
        time.sleep(delay)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    loaded = load_model_dir(target)
    assert loaded.config["version"] >= 1
    assert sum(p.numel() for p in loaded.model.parameters()) > 0
