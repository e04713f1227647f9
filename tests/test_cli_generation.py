"""The generation commands in-process on real data: train, translate, generate, summarize, eval, --stream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multihead.cli import main
from multihead.data import data_root


def _folder(name: str) -> Path:
    try:
        folder = data_root() / name
    except FileNotFoundError:
        folder = Path("/nonexistent")
    return folder


needs = {name: pytest.mark.skipif(not _folder(name).is_dir(), reason=f"../shared/data/{name} is absent; set "
                                  "MULTIHEAD_DATA to the folder holding the data sets")
         for name in ("multi30k", "tinyshakespeare")}

TINY_MODEL = ["--set", "model.preset=tiny", "--set", "model.d_model=32", "--set", "model.n_layers=1",
              "--set", "model.d_ff=64", "--set", "training.batch_size=16", "--set", "training.warmup_steps=0",
              "--set", "training.eval_every=5", "--set", "training.progress=false", "--set", "training.precision=fp32"]


def recipe(name: str) -> str:
    return str(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")


@needs["multi30k"]
def test_translation_train_translate_stream_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mt"
    assert main(["train", recipe("translate-multi30k"), "--output-dir", str(out), *TINY_MODEL,
                 "--set", "model.n_decoder_layers=1", "--set", "training.steps=10",
                 "--set", "tokenizer.vocab_size=1000"]) == 0
    assert "best validation loss" in capsys.readouterr().out
    best = str(out / "best")
    assert main(["translate", best, "A dog runs.", "Two men sit.", "--max-new-tokens", "5"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["translate", best, "A dog runs.", "--num-beams", "1", "--max-new-tokens", "5", "--stream"]) == 0
    streamed = capsys.readouterr().out.strip()
    assert main(["translate", best, "A dog runs.", "--num-beams", "1", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.strip() == (streamed.splitlines() or [""])[-1]  # the stream ends on the answer
    assert main(["eval", best, "--split", "validation", "--limit", "8", "--json", "--num-beams", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sentences"] == 8 and report["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert 0.0 <= report["bleu"] <= 100.0 and len(report["hypotheses"]) == 8


@needs["tinyshakespeare"]
def test_language_model_train_generate_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lm"
    assert main(["train", recipe("lm-tinyshakespeare"), "--output-dir", str(out), *TINY_MODEL,
                 "--set", "training.steps=10", "--set", "model.max_length=16"]) == 0
    assert "bits per character" in capsys.readouterr().out
    best = str(out / "best")
    assert main(["generate", best, "--prompt", "ROMEO:", "--do-sample", "--seed", "3", "--max-new-tokens", "40"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", best, "--prompt", "ROMEO:", "--do-sample", "--seed", "3", "--max-new-tokens", "40"]) == 0
    assert capsys.readouterr().out == first and first.startswith("ROMEO:")  # seeded samples repeat
    assert main(["generate", best, "--prompt", "ROMEO:", "--max-new-tokens", "12", "--stream"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    assert main(["eval", best, "--split", "validation", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["characters"] == 111540 and report["bits_per_character"] > 0


def test_extractive_summarize_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from multihead.model_dir import save_model_dir
    from multihead.models import SentenceScorer, TransformerConfig
    from multihead.tokenizers import Tokenizer

    sentences = ["The company said profits rose.", "Sales grew in Asia.", "The chief executive was pleased.",
                 "Shares rose by 5%.", "Analysts had expected less."]
    tokenizer = Tokenizer.train_from_texts(sentences, kind="word", vocab_size=64, min_frequency=1)
    torch.manual_seed(0)
    model = SentenceScorer(TransformerConfig.preset("tiny", vocab_size=tokenizer.vocab_size, d_model=32, n_layers=1,
                                                    d_ff=64, dropout=0.0), design="hierarchical").eval()
    settings = {"max_length": 64, "max_sentences": 128, "selection": {"ratio": 0.5}}
    save_model_dir(tmp_path / "ex", model=model, tokenizer=tokenizer,
                   extra={"task": "extractive-summarization", "extractive": settings})
    assert main(["summarize", str(tmp_path / "ex"), " ".join(sentences), "--sentences", "2"]) == 0
    summary = capsys.readouterr().out.strip()
    picked = [s for s in sentences if s in summary]
    assert len(picked) == 2 and summary == " ".join(picked)  # two sentences, in article order


def test_sampling_with_beams_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text('{"task": "translation"}')
    assert main(["translate", str(tmp_path), "x", "--do-sample", "--num-beams", "4"]) == 2
    assert "--do-sample" in capsys.readouterr().err
