"""Extractive QA: answer decoding across windows (against brute force), the loss, a tiny model that learns, and
a pretrained encoder under a new span layer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from multihead.data.qa_windows import QAWindows, make_windows
from multihead.data.squad import QAAnswer, QAExample
from multihead.models import SpanExtractor, TransformerConfig
from multihead.tasks.qa_decode import SpanCollector, best_window_spans, predict_answers
from multihead.tasks.question_answering import QATask, span_extractor_from_pretrained
from multihead.tokenizers import Tokenizer

COLOURS = ["red", "blue", "green", "black", "white", "pink", "gray", "gold", "brown", "cyan"]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train_from_texts([*COLOURS, "where is"], kind="word", vocab_size=30, min_frequency=1)


def colour_questions(count: int, seed: int = 0) -> list[QAExample]:
    """"where is X" about eight colours in a row: the answer is the context word equal to the question's last."""
    rng = random.Random(seed)
    examples = []
    for i in range(count):
        words = rng.sample(COLOURS, 8)
        target, context = rng.choice(words), " ".join(words)
        examples.append(QAExample(id=str(i), question=f"where is {target}", context=context,
                                  answers=(QAAnswer(target, context.index(target)),)))
    return examples


def test_best_window_span_obeys_order_length_and_context() -> None:
    start = torch.tensor([[9.0, 0.0, 1.0, 0.0, 5.0, 0.0]])  # (1, 6)
    end = torch.tensor([[9.0, 0.0, 0.0, 4.0, 0.0, 3.0]])
    context = torch.tensor([[False, True, True, True, True, True]])  # position 0 ([CLS]) is never a candidate
    starts, ends, scores = best_window_spans(start, end, context, max_answer_tokens=2)
    # best allowed: start 4 (5.0) + end 5 (3.0) = 8; start 4 + end 3 is backwards; start 2 + end 3 = 5
    assert (int(starts[0]), int(ends[0]), float(scores[0])) == (4, 5, 8.0)
    starts, ends, scores = best_window_spans(start, end, context, max_answer_tokens=1)
    assert (int(starts[0]), int(ends[0]), float(scores[0])) == (4, 4, 5.0)


def brute_force(windows: QAWindows, examples: list[QAExample], start: list[torch.Tensor], end: list[torch.Tensor],
                limit: int) -> dict[str, str]:
    """The best (score, text) over every window and every allowed span, by enumeration in float64."""
    best: dict[int, tuple[float, str]] = {}
    for w, offsets in enumerate(windows.offsets):
        spans = offsets.tolist()
        inside = [i for i, (s, _) in enumerate(spans) if s >= 0]
        for i in inside:
            for j in inside:
                if i <= j < i + limit:
                    score = float(start[w][i].double() + end[w][j].double())
                    text = examples[windows.example[w]].context[spans[i][0]:spans[j][1]]
                    if windows.example[w] not in best or score > best[windows.example[w]][0]:
                        best[windows.example[w]] = (score, text)
    return {examples[k].id: text for k, (_, text) in best.items()}


@pytest.mark.parametrize("limit", [1, 3, 30])
def test_decoding_picks_the_best_valid_span_across_windows(tokenizer: Tokenizer, limit: int) -> None:
    examples = colour_questions(6)
    windows = make_windows(examples, tokenizer, max_length=10, stride=2, max_question_tokens=3)
    assert len(windows) > 2 * len(examples)  # every question spans several windows
    generator = torch.Generator().manual_seed(limit)
    start = [torch.randn(len(ids), generator=generator) for ids in windows.ids]
    end = [torch.randn(len(ids), generator=generator) for ids in windows.ids]
    for w in range(len(windows)):  # huge logits outside the context must never win
        outside = windows.offsets[w][:, 0] < 0
        start[w][outside], end[w][outside] = 50.0, 50.0
    collector = SpanCollector(windows, examples)
    for batch in windows.batches(batch_size=4, pad_id=tokenizer.pad_id or 0):
        rows, width = batch["window"].tolist(), batch["ids"].shape[1]
        padded = [torch.stack([torch.nn.functional.pad(values[r], (0, width - len(values[r])), value=-1e4)
                               for r in rows]) for values in (start, end)]  # (B, T) each
        s, e, scores = best_window_spans(*padded, batch["context_mask"], max_answer_tokens=limit)
        collector.add(rows, s.tolist(), e.tolist(), scores.tolist())
    assert collector.predictions() == brute_force(windows, examples, start, end, limit)
    assert all(answer is not None and answer.text for answer in collector.answers())


def test_loss_is_the_mean_of_start_and_end_cross_entropy(tokenizer: Tokenizer) -> None:
    examples = colour_questions(3)
    windows = make_windows(examples, tokenizer, max_length=16, stride=2, max_question_tokens=4)
    torch.manual_seed(0)
    model = SpanExtractor(TransformerConfig.preset("small", vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                                                   d_model=16, n_heads=2, n_layers=1, d_ff=32, max_length=16))
    model.eval()
    batch = windows.collate(list(range(len(windows))), pad_id=tokenizer.pad_id or 0)
    start, end = model(batch["ids"], mask=batch["mask"])
    expected = sum(-(start[b].log_softmax(-1)[batch["starts"][b]] + end[b].log_softmax(-1)[batch["ends"][b]]) / 2
                   for b in range(len(windows)))
    task = QATask(windows=windows, examples=examples)
    torch.testing.assert_close(task.loss(model, batch), expected)
    assert task.count(batch) == len(windows)


def test_a_tiny_model_learns_to_find_the_answer(tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    examples = colour_questions(48)
    windows = make_windows(examples, tokenizer, max_length=16, stride=2, max_question_tokens=4)
    config = TransformerConfig.preset("small", vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, d_model=32,
                                      n_heads=2, n_layers=2, d_ff=64, max_length=16, dropout=0.0)
    model = SpanExtractor(config)
    task = QATask(windows=windows, examples=examples)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = windows.collate(list(range(len(windows))), pad_id=tokenizer.pad_id or 0)
    model.train()
    for _ in range(100):
        loss = task.loss(model, batch) / len(windows)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        scores = task.evaluate(model, windows.batches(batch_size=16, pad_id=tokenizer.pad_id or 0))
    assert scores["loss"] < 0.1 and scores["f1"] > 95.0, scores
    collector = predict_answers(model, windows, examples, pad_id=tokenizer.pad_id or 0, max_answer_tokens=5)
    assert sum(p == e.answers[0].text for p, e in zip(collector.predictions().values(), examples, strict=True)) > 45


def test_span_extractor_takes_a_pretrained_encoder(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers", reason="builds a tiny Hugging Face BERT to start from")
    from multihead.interop import load_hf

    config = transformers.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=40, initializer_range=0.3)
    torch.manual_seed(0)
    transformers.BertModel(config).eval().save_pretrained(tmp_path)
    encoder = load_hf(tmp_path).model
    model = span_extractor_from_pretrained(tmp_path, overrides={"dropout": 0.2})
    assert model.config.dropout == 0.2 and model.training
    for (name, expected), actual in zip(encoder.state_dict().items(), model.encoder.state_dict().values(),
                                        strict=True):
        torch.testing.assert_close(actual, expected, atol=0, rtol=0, msg=name)
    with pytest.raises(ValueError, match=r"model\.d_model is fixed by the pretrained model"):
        span_extractor_from_pretrained(tmp_path, overrides={"d_model": 64})
