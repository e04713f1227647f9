"""Extractive summarisation: the per-sentence gather, labels, top-k selection, learning, saving and training."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from multihead import experiment
from multihead.data import data_root
from multihead.model_dir import load_model_dir, save_model_dir
from multihead.models import SentenceScorer, TransformerConfig, top_k_in_order
from multihead.models.sentence_scorer import gather_sentences, interval_segments, sentence_means
from multihead.tasks.extractive import (
    ExtractiveTask,
    encode_articles,
    score_articles,
    selection_size,
    summarize_extractive,
    train_extractive,
)
from multihead.tokenizers import Tokenizer

WORDS = ["the", "market", "rose", "fell", "shares", "bank", "prices", "said", "today", "sport", "won", "lost", "team",
         "match", "goal"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread, and on a busy machine its synchronisation stalls them."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train_from_texts([" ".join(WORDS)] * 3, kind="word", vocab_size=64, min_frequency=1)


def tiny(vocab_size: int, **changes: object) -> TransformerConfig:
    values: dict[str, object] = {"d_model": 32, "n_heads": 2, "n_layers": 1, "d_ff": 64, "max_length": 128,
                                 "dropout": 0.0, **changes}
    return TransformerConfig.preset("tiny", vocab_size=vocab_size, pad_id=0, **values)


# --------------------------------------------------------------------------------------------- the model
def test_gather_and_sentence_means_by_hand() -> None:
    hidden = torch.arange(12.0).view(1, 6, 2)  # token t holds (2t, 2t + 1)
    positions, sentence_mask = torch.tensor([[0, 2, 0]]), torch.tensor([[True, True, False]])
    assert gather_sentences(hidden, positions).tolist() == [[[0.0, 1.0], [4.0, 5.0], [0.0, 1.0]]]
    mask = torch.tensor([[True, True, True, True, True, False]])  # token 5 is padding
    # sentence 0 = tokens 0-1, sentence 1 = tokens 2-4; padding and the padded sentence are left out
    assert sentence_means(hidden, mask, positions, sentence_mask).tolist() == [[[1.0, 2.0], [6.0, 7.0], [0.0, 0.0]]]
    assert interval_segments(positions, sentence_mask, 6).tolist() == [[0, 0, 1, 1, 1, 1]]


@pytest.mark.parametrize("design", ["flat", "hierarchical"])
def test_logits_read_each_sentence_and_ignore_padding(design: str) -> None:
    torch.manual_seed(0)
    model = SentenceScorer(tiny(20), design=design).eval()  # type: ignore[arg-type]
    ids = torch.tensor([[2, 5, 6, 3, 2, 7, 3, 0], [2, 8, 9, 10, 3, 0, 0, 0]])
    positions = torch.tensor([[0, 4], [0, 0]])
    sentence_mask = torch.tensor([[True, True], [True, False]])
    with torch.no_grad():
        logits = model(ids, positions=positions, sentence_mask=sentence_mask)
        alone = model(ids[1:, :5], positions=positions[1:, :1], sentence_mask=sentence_mask[1:, :1])
    assert logits.shape == (2, 2) and logits[1, 1] == torch.finfo(logits.dtype).min
    assert torch.allclose(logits[1, 0], alone[0, 0], atol=1e-5)  # padding changes nothing
    if design == "flat":  # the logit of a sentence is the scorer on the encoder's state at its [CLS]
        hidden = model.encoder(ids, mask=ids != 0)
        assert torch.allclose(logits[0], model.scorer(hidden[0, [0, 4]]).squeeze(-1), atol=1e-5)
    with pytest.raises(ValueError, match="design must be one of"):
        SentenceScorer(tiny(20), design="tree")  # type: ignore[arg-type]


def test_top_k_in_article_order() -> None:
    assert top_k_in_order([0.1, 0.9, 0.5, 0.9], 2) == [1, 3]
    assert top_k_in_order(torch.tensor([3.0, 1.0, 2.0]), 2) == [0, 2]
    assert top_k_in_order([0.5, 0.5, 0.5], 2) == [0, 1]  # ties go to the earlier sentence
    assert top_k_in_order([1.0], 5) == [0] and top_k_in_order([], 3) == []
    assert [selection_size(n, {"ratio": 0.4}) for n in (1, 5, 10)] == [1, 2, 4] and selection_size(9, {"k": 3}) == 3


# --------------------------------------------------------------------------------------------- data to batches
def test_labels_and_truncation(tokenizer: Tokenizer) -> None:
    article = ["the market rose", "shares fell", "the team won today", "goal"]
    encoded = encode_articles([article], tokenizer=tokenizer, max_length=12, labels=[[True, False, True, True]])
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    ids = encoded.ids[0]
    assert encoded.positions == [[0, 5, 9]]  # the 4th sentence's [CLS] would not fit with a token after it
    assert [ids[p] for p in encoded.positions[0]] == [cls] * 3 and ids[4] == sep and len(ids) == 12
    assert encoded.labels == [[1.0, 0.0, 1.0]] and encoded.n_sentences == [4]
    assert encode_articles([article], tokenizer=tokenizer, max_length=99, max_sentences=2).positions == [[0, 5]]
    batch = encoded.collate([0], pad_id=0)
    assert batch["sentence_mask"].tolist() == [[True, True, True]] and batch["labels"].tolist() == [[1.0, 0.0, 1.0]]


def test_a_tiny_model_learns_which_sentences_to_keep(tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    key, filler = ["market rose", "prices fell", "bank said"], ["team won", "match lost", "goal today"]
    articles = [[filler[i % 3], key[i % 3], filler[(i + 1) % 3], key[(i + 2) % 3]] for i in range(6)]
    labels = [[False, True, False, True]] * 6
    encoded = encode_articles(articles, tokenizer=tokenizer, max_length=64, labels=labels)
    model = SentenceScorer(tiny(tokenizer.vocab_size), design="hierarchical")
    task = ExtractiveTask(n_sentences=encoded.n_sentences, n_positive=[2] * 6, rule={"k": 2})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = encoded.collate(range(6), pad_id=0)
    for _ in range(60):
        loss = task.loss(model, batch) / task.count(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert float(loss.detach()) < 0.05
    model.eval()
    with torch.no_grad():
        assert task.evaluate(model, [batch])["sentence_f1"] == 1.0


# --------------------------------------------------------------------------------------------- saved models
def test_summarize_round_trip_through_a_model_directory(tmp_path: Path, tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    model = SentenceScorer(tiny(tokenizer.vocab_size), design="hierarchical").eval()
    settings = {"max_length": 64, "max_sentences": 128, "selection": {"ratio": 0.5}}
    save_model_dir(tmp_path / "model", model=model, tokenizer=tokenizer, extra={"extractive": settings})
    assert load_model_dir(tmp_path / "model").config["architecture_args"] == {
        "design": "hierarchical", "segment_embeddings": False}
    sentences = ["The market rose.", "Shares fell today.", "The team won.", "Prices fell."]
    summaries = summarize_extractive(tmp_path / "model", [" ".join(sentences), sentences, ""])
    scores = score_articles(model, encode_articles([sentences], tokenizer=tokenizer, max_length=64), pad_id=0)[0]
    expected = [sentences[i] for i in top_k_in_order(scores, 2)]
    assert summaries == [expected, expected, []]
    assert summarize_extractive(tmp_path / "model", [sentences], k=3)[0] == [
        sentences[i] for i in top_k_in_order(scores, 3)]
    with pytest.raises(ValueError, match="k must be a positive integer or None, got 0"):
        summarize_extractive(tmp_path / "model", [sentences], k=0)


# --------------------------------------------------------------------------------------------- training
def test_train_extractive_end_to_end(tmp_path: Path) -> None:
    try:
        source = data_root() / "bbc-news-summary" / "bbc-news-summary.jsonl.gz"
    except FileNotFoundError as error:
        pytest.skip(f"no data root: {error}")
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(24)]
    files = {"train": lines[:16], "validation": lines[16:20], "test": lines[20:]}
    for name, chosen in files.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(chosen), encoding="utf-8")
    config = experiment.build_experiment({
        "task": "extractive-summarization", "output_dir": str(tmp_path / "run"),
        "data": {name: str(tmp_path / f"{name}.jsonl") for name in files} | {"max_length": 1024},
        "tokenizer": {"kind": "word", "vocab_size": 2000, "min_frequency": 1},
        "model": {"preset": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "d_ff": 64, "max_length": 128},
        "training": {"steps": 4, "batch_size": 8, "eval_every": 2, "metric": "sentence_f1", "progress": False},
    })
    messages: list[str] = []
    result = train_extractive(config, log=messages.append)
    assert result.best_step in (2, 4) and 0.0 <= (result.best_validation or 0.0) <= 1.0
    assert result.test_report is not None and result.test_report["articles"] == 4
    assert set(result.test_report["model"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["extractive"]["selection"] == result.selection
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text())["lead3"] == result.test_report["lead3"]
    assert any("validation ROUGE-2 F1 by selection rule" in message for message in messages)
