"""Experiment configs: YAML and TOML, validation that names the key, overrides, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from multihead.experiment import apply_overrides, load_experiment

YAML = """\
task: classification
output_dir: out
data:
  train: data/train.tsv
  max_length: 64
tokenizer:
  kind: bpe
  vocab_size: 500
model:
  preset: tiny
  n_layers: 1
  pooling: max
training:
  steps: 10
  lr: 1.0e-3
  betas: [0.9, 0.98]
"""

TOML = """\
task = "classification"
[data]
train = "data/train.tsv"
[model]
preset = "tiny"
[training]
steps = 10
"""


def test_yaml_and_toml_load_and_resolve_paths(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(YAML)
    (tmp_path / "b.toml").write_text(TOML)
    from_yaml = load_experiment(tmp_path / "a.yaml")
    from_toml = load_experiment(tmp_path / "b.toml")
    assert from_yaml.data.train == str(tmp_path / "data" / "train.tsv") == from_toml.data.train
    assert from_yaml.training.betas == (0.9, 0.98)
    config = from_yaml.model_config(vocab_size=500, pad_id=0)
    assert (config.n_layers, config.d_model, config.vocab_size) == (1, 64, 500)


def test_overrides_parse_values(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(YAML)
    config = load_experiment(tmp_path / "a.yaml", ["training.lr=3e-4", "training.precision=bf16",
                                                   "model.n_heads=2", "training.patience=null"])
    assert config.training.lr == 3e-4 and config.training.precision == "bf16"
    assert config.model["n_heads"] == 2 and config.training.patience is None
    with pytest.raises(ValueError, match="expected key=value"):
        apply_overrides({}, ["training.lr"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("  lr: 1.0e-3", "  lrate: 1.0e-3"), "unknown key training.lrate"),
        (("  n_layers: 1", "  layers: 1"), "unknown key model.layers"),
        (("task: classification", "task: translate"), "task must be one of"),
        (("  max_length: 64", "  max_length: 1"), "data.max_length must be >= 2"),
        (("  n_layers: 1", "  n_heads: 5"), r"d_model \(64\) must be divisible by n_heads \(5\)"),
        (("  steps: 10", "  steps: -1"), "training.steps must be a positive integer"),
    ],
)
def test_bad_values_are_named_with_the_file(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(YAML.replace(*change))
    with pytest.raises(ValueError, match=message) as error:
        load_experiment(path)
    assert "bad.yaml" in str(error.value)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  train: x\n  - oops\n")
    with pytest.raises(ValueError, match=r"broken.yaml: line \d+: not valid YAML"):
        load_experiment(path)


def test_recipes_load_and_the_bbc_recipe_is_the_demo() -> None:
    from multihead.demo import DEMO_CONFIG
    from multihead.experiment import build_experiment

    configs = sorted(path for path in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                     if not path.name.startswith("compare-"))  # multihead compare configs: tests/compare
    assert configs, "configs/ holds the shipped recipes"
    loaded = {path.name: load_experiment(path) for path in configs}
    demo = build_experiment({**DEMO_CONFIG, "output_dir": "runs/topics-bbc"})
    assert loaded["topics-bbc.yaml"] == demo
