"""A sequence-to-sequence recipe with ``model.copy_attention`` and a ``decoding`` section: trained, saved, loaded,
decoded with the recipe's decoding options by default."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from multihead.data.summaries import bbc_news_summary, data_root
from multihead.errors import ConfigError
from multihead.experiment import build_experiment
from multihead.tasks.seq2seq import summaries_in_article_order, train_seq2seq
from multihead.tasks.seq2seq_eval import load_seq2seq
from threads import one_intra_op_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)
WORDS = [f"w{i}" for i in range(60)]


def _pairs(path: Path, n: int, seed: int) -> tuple[Path, Path]:
    """Sources of 3 to 6 random words; the target is the source: only copying solves it for new inputs."""
    rng = random.Random(seed)
    sources = [" ".join(rng.sample(WORDS, k=rng.randint(3, 6))) for _ in range(n)]
    path.with_suffix(".src").write_text("\n".join(sources) + "\n")
    path.with_suffix(".tgt").write_text("\n".join(sources) + "\n")
    return path.with_suffix(".src"), path.with_suffix(".tgt")


def test_a_copying_recipe_trains_and_decodes_with_its_decoding_section(tmp_path: Path) -> None:
    source, target = _pairs(tmp_path / "train", 800, seed=0)
    config = build_experiment({
        "task": "abstractive-summarization", "output_dir": str(tmp_path / "run"),
        "data": {"train": str(source), "train_target": str(target), "validation_fraction": 0.05},
        "tokenizer": {"kind": "word", "vocab_size": 100, "min_frequency": 1, "lowercase": False},
        "model": {"preset": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "n_decoder_layers": 1, "d_ff": 64,
                  "dropout": 0.0, "positions": "sinusoidal", "copy_attention": True},
        "training": {"steps": 300, "batch_size": 32, "lr": 3e-3, "warmup_steps": 10, "eval_every": 300,
                     "metric": "loss", "mode": "min", "progress": False},
        "decoding": {"num_beams": 2, "no_repeat_ngram_size": 2, "min_new_tokens": 2},
    })
    result = train_seq2seq(config, log=lambda _: None)
    assert result.best_validation is not None and result.best_validation < 0.05
    model = load_seq2seq(tmp_path / "run" / "best")
    assert model.model.copy_generator is not None
    generation = model.generation_config()
    assert (generation.num_beams, generation.no_repeat_ngram_size, generation.min_new_tokens) == (2, 2, 2)
    assert model.generation_config(num_beams=1).num_beams == 1  # options still override the recipe
    rng = random.Random(5)
    held_out = [" ".join(rng.sample(WORDS, k=5)) for _ in range(20)]
    assert model(held_out) == held_out


def test_a_bad_decoding_section_is_a_config_error() -> None:
    base = {"task": "translation", "data": {"dataset": "multi30k"}}
    with pytest.raises(ConfigError, match=r"decoding\.beams"):
        build_experiment({**base, "decoding": {"beams": 4}})
    with pytest.raises(ConfigError, match="no_repeat_ngram_size"):
        build_experiment({**base, "decoding": {"no_repeat_ngram_size": -1}})
    with pytest.raises(ConfigError, match=r"decoding\.eos_id"):
        build_experiment({**base, "decoding": {"eos_id": 3}})


def test_bbc_training_targets_list_the_reference_sentences_in_article_order() -> None:
    try:
        source = data_root() / "bbc-news-summary" / "bbc-news-summary.jsonl.gz"
    except FileNotFoundError as error:
        pytest.skip(f"no data root: {error} (see ../shared/data/README.md, or `multihead data fetch bbc-news-summary`)")
    if not source.is_file():
        pytest.skip(f"{source} is absent (`multihead data fetch bbc-news-summary` downloads it)")
    articles = bbc_news_summary()["validation"]
    ordered = summaries_in_article_order(["validation"])["validation"]
    assert len(ordered) == len(articles) == 448
    moved = 0
    for article, pair in zip(articles, ordered, strict=True):
        assert pair.text == " ".join(article.sentences)
        positions = [article.sentences.index(s) for s in article.summary_sentences if s in article.sentences]
        expected = " ".join(article.sentences[i] for i in sorted(positions))
        if len(positions) == len(article.summary_sentences):
            assert pair.label == expected
        assert sorted(pair.label.split()) == sorted(" ".join(article.summary_sentences).split())
        moved += pair.label != " ".join(article.summary_sentences)
    assert moved > 400  # the given order is rarely the article's
