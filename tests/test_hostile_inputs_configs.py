"""Hostile experiment configs and ``--set`` values: YAML alias bombs, deep nesting, non-finite numbers and sizes far
over the limits each give one short line, before any memory is taken."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hostile import fails, language_model_dir
from multihead.errors import ConfigError, LimitError
from multihead.experiment import load_experiment
from multihead.generation import GenerationConfig
from multihead.limits import MAX_NEW_TOKENS
from multihead.models import TransformerConfig
from multihead.training import TrainingConfig

RECIPE = """\
task: classification
output_dir: OUTPUT
data: {train: train.tsv, max_length: 8}
tokenizer: {kind: word, vocab_size: 40, min_frequency: 1}
model: {preset: tiny, d_model: 16, n_heads: 2, n_layers: 1, d_ff: 32}
training: {steps: 2, batch_size: 4, eval_every: 2, progress: false}
"""

BOMB = "".join(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
               for previous, name in zip("abcdefgh", "bcdefghi", strict=True))
"""Nine levels of nine-fold aliases: 468 bytes that expand to 387 million strings."""


def _recipe(folder: Path) -> str:
    """The recipe with its output in ``folder`` (never in the working directory)."""
    return RECIPE.replace("OUTPUT", str(folder / "run"))


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(_recipe(tmp_path))
    return path


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bomb.yaml"
    first = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    path.write_text(first + BOMB + _recipe(tmp_path))
    line = fails(capsys, ["train", str(path)], says=("bomb.yaml", "line 2", "alias", "not allowed"))
    assert len(line) < 300


@pytest.mark.parametrize("value", ["&a [1, *a]", "[1,", "{a: [1, 2}", "[" * 1000 + "]" * 1000],
                         ids=["alias", "unclosed", "mismatched", "deep"])
def test_a_bad_set_value_is_one_line(value: str, recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = fails(capsys, ["train", str(recipe), "--set", f"training.lr={value}"], says="--set")
    assert len(line) < 400


@pytest.mark.parametrize(("suffix", "text"), [(".yaml", "a: " + "[" * 1000 + "]" * 1000 + "\n"),
                                              (".toml", "a = " + "[" * 1000 + "]" * 1000 + "\n"),
                                              (".yaml", "a: b: c\n  - d\n"),
                                              (".yaml", b"task: \xff\n")],
                         ids=["deep-yaml", "deep-toml", "broken-yaml", "not-utf8"])
def test_deep_or_broken_config_files_are_one_line(suffix: str, text: str | bytes, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"config{suffix}"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    fails(capsys, ["train", str(path)], says=str(path))


@pytest.mark.parametrize(("setting", "says"), [
    ("training.lr=.inf", "training.lr must be a finite number, got inf"),
    ("training.clip_norm=.nan", "training.clip_norm must be a finite number, got nan"),
    ("training.betas=[0.9, .nan]", "training.betas must be"),
    ("model.eps=.nan", "model.eps must be a finite number"),
    ("model.dropout=.nan", "model.dropout"),
    ("pretraining.lr=-.inf", "pretraining.lr must be a finite number"),
    ("data.validation_fraction=.nan", "data.validation_fraction"),
])
def test_non_finite_numbers_are_refused(setting: str, says: str, recipe: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fails(capsys, ["train", str(recipe), "--set", setting], says=says)
    assert not (recipe.parent / "run").exists()


@pytest.mark.parametrize(("settings", "says"), [
    (["model.d_model=1000000000"], ("model.d_model = 1,000,000,000", "limit of 65,536")),
    (["model.d_model=60000", "model.n_layers=500"], ("parameters", "limit of 20,000,000,000")),
    (["model.max_length=100000000000"], ("model.max_length",)),
    (["tokenizer.vocab_size=100000000000", "tokenizer.kind=bpe"], ("tokenizer.vocab_size", "limit")),
    (["model.architecture=textcnn", "model.preset=null", "model.d_model=null", "model.n_heads=null",
      "model.n_layers=null", "model.d_ff=null", "model.d_embedding=60000", "model.n_filters=60000"], ("parameters",)),
])
def test_sizes_over_the_limits_are_refused_before_allocating(settings: list[str], says: tuple[str, ...], recipe: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    arguments = [part for setting in settings for part in ("--set", setting)]
    if "model.architecture=textcnn" in settings:
        transformer = "model: {preset: tiny, d_model: 16, n_heads: 2, n_layers: 1, d_ff: 32}"
        recipe.write_text(_recipe(recipe.parent).replace(transformer, "model: {architecture: textcnn}"))
        arguments = [part for setting in settings[-2:] for part in ("--set", setting)]
    fails(capsys, ["train", str(recipe), *arguments], says=says)


@pytest.mark.parametrize("setting", ["model.pooling=" + "x" * 100_000, "task=" + "y" * 100_000,
                                     "model." + "z" * 100_000 + "=1", "model.preset=" + "p" * 100_000,
                                     "data.format=" + "f" * 100_000],
                         ids=["pooling", "task", "key", "preset", "format"])
def test_long_values_are_cut_in_messages(setting: str, recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = fails(capsys, ["train", str(recipe), "--set", setting])
    assert len(line) < 700


def test_model_extras_are_type_checked(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails(capsys, ["train", str(recipe), "--set", "model.architecture=[1, 2]"], says="model.architecture must be")
    fails(capsys, ["train", str(recipe), "--set", "model.shared_vocabulary=3"], says="model.shared_vocabulary")


def test_python_api_configs_refuse_the_same(tmp_path: Path) -> None:
    for bad in (math.inf, math.nan):
        with pytest.raises(ConfigError, match=r"training\.lr must be a finite number"):
            TrainingConfig(lr=bad)
        with pytest.raises(ConfigError, match="eps"):
            TransformerConfig(vocab_size=10, d_model=8, n_heads=2, eps=bad)
    with pytest.raises(LimitError, match=r"TransformerConfig.d_model = 1,000,000,000 is over the limit"):
        TransformerConfig(vocab_size=10, d_model=1_000_000_000, n_heads=1)
    with pytest.raises(ValueError, match="finite"):  # a MultiheadError is a ValueError too
        TrainingConfig(clip_norm=math.nan)


def test_an_estimate_counts_parameters_before_allocating() -> None:
    from multihead.models import DecoderLM, EncoderDecoder

    for config, build in [
        (TransformerConfig(vocab_size=500, d_model=32, n_heads=4, n_layers=2, positions="learned", max_length=64),
         DecoderLM),
        (TransformerConfig(vocab_size=500, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, n_decoder_layers=1,
                           activation="swiglu", tie_embeddings=False), EncoderDecoder),
    ]:
        actual = sum(parameter.numel() for parameter in build(config).parameters())
        assert abs(config.estimated_parameters - actual) <= 0.05 * actual


def test_generation_lengths_are_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LimitError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=MAX_NEW_TOKENS + 1)
    model = language_model_dir(tmp_path / "lm")
    fails(capsys, ["generate", str(model), "--prompt", "a good", "--max-new-tokens", "10000000"],
          says=("max_new_tokens", "10,000,000", "limit"))
    monkeypatch.setattr("multihead.generation.api.physical_memory", lambda: 1 << 20)  # a 1 MiB machine
    fails(capsys, ["generate", str(model), "--prompt", "a good", "--max-new-tokens", "5000"],
          says=("key/value cache", "more than half this machine's memory"))
    from multihead.generation import generate
    from multihead.model_dir import load_model_dir

    learned = load_model_dir(language_model_dir(tmp_path / "learned", positions="learned")).model
    with pytest.raises(LimitError, match="learned positions; the model has max_length 64"):
        generate(learned, [[5, 6]], GenerationConfig(max_new_tokens=100))


def test_data_format_names_a_file_without_a_suffix(tmp_path: Path, recipe: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["text\tlabel"] + [f"{'good fun' if i % 2 else 'bad dull'} film\t{'pos' if i % 2 else 'neg'}"
                              for i in range(20)]
    (tmp_path / "examples").write_text("\n".join(rows) + "\n")
    recipe.write_text(_recipe(tmp_path).replace("train: train.tsv", "train: examples"))
    fails(capsys, ["train", str(recipe)], says=("cannot tell the format", "data.format"))
    from multihead.tasks.classification import load_splits

    config = load_experiment(recipe, ["data.format=tsv"])
    splits = load_splits(config)
    assert len(splits["train"]) + len(splits["validation"]) == 20
    assert load_experiment(recipe, ["data.format=text"]).data.format == "text"
    fails(capsys, ["train", str(recipe), "--set", "data.format=xml"], says="data.format must be one of")
