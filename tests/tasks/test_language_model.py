"""Language-model task: windows, exact validation coverage, the loss it reports, training end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from multihead.experiment import build_experiment
from multihead.models import DecoderLM, TransformerConfig
from multihead.tasks.language_model import (
    LanguageModelTask,
    RandomWindows,
    TokenStream,
    encode_stream,
    train_language_model,
)
from multihead.tasks.text_generator import evaluate_language_model, load_text_generator
from multihead.tokenizers import Tokenizer


def test_windows_cover_every_token_once() -> None:
    stream = TokenStream(ids=torch.arange(23), characters=23)
    batches = list(stream.batches(length=5, batch_size=2))
    targets = torch.cat([b["targets"].flatten() for b in batches])
    assert targets.tolist() == list(range(1, 23))
    for batch in batches:
        assert torch.equal(batch["targets"][:, :-1], batch["ids"][:, 1:])


def test_random_windows_are_seeded_and_in_range() -> None:
    sampler = RandomWindows(100, length=10, batch_size=4, steps_per_epoch=50, seed=3)
    first, again, other = sampler.batches(0), sampler.batches(0), sampler.batches(1)
    assert first == again and first != other
    offsets = [o for batch in first for o in batch]
    assert min(offsets) >= 0 and max(offsets) + 10 + 1 <= 100 and len(first) == 50
    with pytest.raises(ValueError, match="fewer than a window"):
        RandomWindows(8, length=10, batch_size=1, steps_per_epoch=1, seed=0)


def test_evaluate_is_mean_cross_entropy_and_bits_per_character() -> None:
    torch.manual_seed(0)
    model = DecoderLM(TransformerConfig.preset("tiny", vocab_size=11, max_length=8)).eval()
    stream = TokenStream(ids=torch.randint(11, (41,)), characters=80)  # 2 characters a token
    task = LanguageModelTask(characters_per_token=2.0)
    with torch.no_grad():
        scores = task.evaluate(model, stream.batches(length=8, batch_size=3))
        logits = torch.cat([model(stream.ids[i:i + 8][None]).squeeze(0)[: len(stream.ids[i + 1:i + 9])]
                            for i in range(0, 40, 8)])
        expected = F.cross_entropy(logits, stream.ids[1:]).item()
    assert scores["loss"] == pytest.approx(expected, rel=1e-5)
    assert scores["bits_per_character"] == pytest.approx(expected / math.log(2) / 2.0, rel=1e-5)
    assert scores["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_encode_stream_keeps_every_character(tmp_path: Path) -> None:
    text = "".join(f"line {i}: to be, or not to be\n" for i in range(50))
    tokenizer = Tokenizer.train_from_texts([text], kind="char", vocab_size=100, min_frequency=1, lowercase=False)
    stream = encode_stream(tokenizer, text)
    assert tokenizer.decode(stream.ids.tolist()) == text and stream.characters == len(text)


def test_train_generate_and_evaluate_on_a_text_file(tmp_path: Path) -> None:
    text = "abcabcabd\n" * 300
    (tmp_path / "train.txt").write_text(text)
    config = build_experiment({
        "task": "language-model", "output_dir": str(tmp_path / "run"),
        "data": {"train": str(tmp_path / "train.txt"), "validation_fraction": 0.1},
        "tokenizer": {"kind": "char", "vocab_size": 50, "min_frequency": 1, "lowercase": False},
        "model": {"preset": "tiny", "d_model": 32, "n_layers": 1, "max_length": 16, "dropout": 0.0,
                  "positions": "learned"},
        "training": {"steps": 120, "batch_size": 8, "lr": 1e-2, "eval_every": 60, "metric": "loss", "mode": "min",
                     "progress": False},
    })
    result = train_language_model(config, log=lambda _: None)
    assert result.best_validation is not None and result.best_validation < 0.4  # the pattern is learnt
    generator = load_text_generator(tmp_path / "run" / "best")
    continuation = generator(["abcabcab"], generation=generator.generation_config(max_new_tokens=10))[0][0]
    assert continuation.startswith("d\nabc")
    long = generator(["abc"], generation=generator.generation_config(max_new_tokens=40))[0][0]  # past the context
    assert len(long) == 40 and "abc" + long in "abcabcabd\n" * 10  # the pattern holds across windows
    streamed = list(generator.stream("abc", generation=generator.generation_config(max_new_tokens=40)))
    assert streamed[-1] == long and len(streamed) > 1
    with pytest.raises(ValueError, match="context of 16 learned positions"):
        generator(["abc"], generation=generator.generation_config(max_new_tokens=40, num_beams=2))
    report = evaluate_language_model(tmp_path / "run" / "best")
    assert report["loss"] == pytest.approx(result.best_validation, rel=1e-4)
    assert report["characters"] == 300
