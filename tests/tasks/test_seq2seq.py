"""Sequence-to-sequence task: batches, the loss, reading pairs, and train -> translate -> BLEU end to end."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from multihead.data import Example
from multihead.experiment import build_experiment
from multihead.models import EncoderDecoder, TransformerConfig
from multihead.tasks.seq2seq import IGNORE, PairExamples, Seq2SeqTask, encode_pairs, load_pairs, train_seq2seq
from multihead.tasks.seq2seq_eval import evaluate_seq2seq, load_seq2seq
from multihead.tokenizers import Tokenizer

BOS, EOS, PAD = 4, 5, 0


def test_collate_shifts_targets_and_ignores_padding() -> None:
    examples = PairExamples(sources=[[7, 8, EOS], [9, EOS]], targets=[[BOS, 10, 11, EOS], [BOS, 12, EOS]])
    batch = examples.collate([0, 1], pad_id=PAD)
    assert batch["source"].tolist() == [[7, 8, EOS], [9, EOS, PAD]]
    assert batch["target_in"].tolist() == [[BOS, 10, 11], [BOS, 12, EOS]]
    assert batch["target_out"].tolist() == [[10, 11, EOS], [12, EOS, IGNORE]]


def test_loss_is_summed_token_cross_entropy() -> None:
    torch.manual_seed(0)
    model = EncoderDecoder(TransformerConfig.preset("tiny", vocab_size=20, pad_id=PAD)).eval()
    examples = PairExamples(sources=[[7, 8, EOS], [9, EOS]], targets=[[BOS, 10, 11, EOS], [BOS, 12, EOS]])
    batch = examples.collate([0, 1], pad_id=PAD)
    task = Seq2SeqTask()
    with torch.no_grad():
        loss = task.loss(model, batch)
        pairs = zip(examples.sources, examples.targets, strict=True)
        expected = sum(F.cross_entropy(model(torch.tensor([s]), torch.tensor([t[:-1]]))[0], torch.tensor(t[1:]),
                                       reduction="sum") for s, t in pairs)
        scores = task.evaluate(model, [batch])
    assert task.count(batch) == 5
    torch.testing.assert_close(loss, expected)
    assert scores["loss"] == pytest.approx(expected.item() / 5, rel=1e-5)


def test_encode_pairs_adds_specials_and_truncates() -> None:
    tokenizer = Tokenizer.train_from_texts(["a b c d e f g"], kind="word", vocab_size=50, min_frequency=1)
    pairs = [Example("a b c d e f g", "a b", "x:1")]
    encoded = encode_pairs(pairs, source_tokenizer=tokenizer, target_tokenizer=tokenizer, max_source_length=4,
                           max_target_length=3)
    assert len(encoded.sources[0]) == 4 and encoded.sources[0][-1] == tokenizer.eos_id
    assert encoded.targets[0] == [tokenizer.bos_id, tokenizer.token_to_id("a"), tokenizer.eos_id]


def test_missing_target_column_is_named(tmp_path: Path) -> None:
    (tmp_path / "pairs.tsv").write_text("source\ttarget\nhello\t\n")
    config = build_experiment({"task": "translation", "data": {"train": str(tmp_path / "pairs.tsv")}})
    with pytest.raises(ValueError, match=r"pairs\.tsv"):
        load_pairs(config)


def _copy_task(path: Path, n: int, seed: int) -> tuple[Path, Path]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    sources = [" ".join(rng.choices(words, k=rng.randint(2, 6))) for _ in range(n)]
    (path.with_suffix(".src")).write_text("\n".join(sources) + "\n")
    (path.with_suffix(".tgt")).write_text("\n".join(s.upper() for s in sources) + "\n")  # "translate": capitals
    return path.with_suffix(".src"), path.with_suffix(".tgt")


def test_train_translate_and_score_end_to_end(tmp_path: Path) -> None:
    train_source, train_target = _copy_task(tmp_path / "train", 600, seed=0)
    test_source, test_target = _copy_task(tmp_path / "test", 30, seed=1)
    config = build_experiment({
        "task": "translation", "output_dir": str(tmp_path / "run"),
        "data": {"train": str(train_source), "train_target": str(train_target), "validation_fraction": 0.05},
        "tokenizer": {"kind": "word", "vocab_size": 100, "min_frequency": 1, "lowercase": False},
        "model": {"preset": "tiny", "d_model": 64, "n_layers": 2, "dropout": 0.0, "positions": "learned"},
        "training": {"steps": 300, "batch_size": 32, "lr": 2e-3, "warmup_steps": 30, "eval_every": 150,
                     "metric": "loss", "mode": "min", "progress": False},
    })
    result = train_seq2seq(config, log=lambda _: None)
    assert result.best_validation is not None and result.best_validation < 0.1
    model = load_seq2seq(tmp_path / "run" / "best")
    assert model(["alpha beta gamma"]) == ["ALPHA BETA GAMMA"]
    report = evaluate_seq2seq(tmp_path / "run" / "best", data=(str(test_source), str(test_target)))
    references = test_target.read_text().splitlines()
    expected = sacrebleu.corpus_bleu(report["hypotheses"], [references])
    assert report["bleu"] == pytest.approx(expected.score) and report["bleu"] > 90
    assert report["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
