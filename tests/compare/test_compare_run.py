"""``multihead compare`` end to end, in-process, on a tiny budget: a classification comparison of the
Transformer, TextCNN and BiLSTM with measurements, and a probe comparison; plus config validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from multihead.cli import main
from multihead.compare import build_compare, run_compare
from multihead.compare.measure import TaskInputs, interleaved_medians, peak_forward_bytes
from threads import one_intra_op_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)

ARCHITECTURES = {
    "transformer": {"model": {"preset": "tiny", "d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32,
                              "positions": "sinusoidal", "max_length": 16}},
    "textcnn": {"model": {"architecture": "textcnn", "d_embedding": 8, "n_filters": 4}, "training": {"lr": 3e-3}},
    "bilstm": {"model": {"architecture": "bilstm", "d_embedding": 8, "d_hidden": 4}},
}


def write_data(folder: Path) -> Path:
    lines = [f"{'good' if i % 2 else 'bad'} film {i}\t{'pos' if i % 2 else 'neg'}" for i in range(24)]
    (folder / "train.tsv").write_text("text\tlabel\n" + "\n".join(lines) + "\n")
    (folder / "base.yaml").write_text(
        "task: classification\ndata: {train: train.tsv, test: train.tsv, max_length: 16}\n"
        "tokenizer: {kind: word, vocab_size: 60, min_frequency: 1}\n"
        "training: {steps: 4, batch_size: 8, eval_every: 2, lr: 1.0e-3, progress: false}\n")
    return folder / "base.yaml"


def test_compare_classifiers_end_to_end(tmp_path: Path) -> None:
    write_data(tmp_path)
    (tmp_path / "compare.yaml").write_text(json.dumps({
        "title": "tiny", "base": "base.yaml", "output_dir": str(tmp_path / "out"), "architectures": ARCHITECTURES,
        "measure": {"lengths": [8, 16], "batch_size": 2, "rounds": 1, "train_length": 8}}))  # JSON is YAML
    assert main(["compare", str(tmp_path / "compare.yaml"), "--set", "measure.rounds=2"]) == 0
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert list(report["quality"]) == list(ARCHITECTURES)
    for label, quality in report["quality"].items():
        assert 0.0 <= quality["test"]["accuracy"] <= 1.0 and quality["parameters"] > 0
        assert quality["architecture"] == ARCHITECTURES[label]["model"].get("architecture", "transformer")
        assert (out / label / "best" / "model.safetensors").is_file()
        assert set(report["measured"]["latency"][label]) == {"8", "16"}
        assert report["measured"]["peak_memory_bytes"][label]["16"] > 0
        assert report["measured"]["train_tokens_per_cpu_second"][label] > 0
    assert report["measured"]["settings"]["rounds"] == 2
    assert list(report["significance"]) == ["transformer vs textcnn", "transformer vs bilstm", "textcnn vs bilstm"]
    for pair, test in report["significance"].items():
        first, second = (report["quality"][label]["test"] for label in pair.split(" vs "))
        # the examples only one of them got right account for the whole accuracy difference (24 test lines)
        assert (test["first_only"] - test["second_only"]) / 24 == pytest.approx(first["accuracy"] - second["accuracy"])
        assert 0.0 < test["p_value"] <= 1.0
        low, high = first["accuracy_interval"]
        assert low <= first["accuracy"] <= high
    text = (out / "report.md").read_text()
    assert "exact McNemar p = " in text and "test accuracy (95% interval)" in text
    assert "--set measure.rounds=2" in text and "| textcnn |" in text and "## What the figures say" in text
    assert (out / "latency.png").stat().st_size > 1000 and (out / "memory.png").is_file()


def test_compare_on_the_probe(tmp_path: Path) -> None:
    config = build_compare({
        "title": "probe", "output_dir": str(tmp_path / "probe"), "measure": None,
        "probe": {"distances": [2, 6], "n_keys": 4, "n_values": 2, "extra_pairs": 1, "max_lead": 2,
                  "train_examples": 32, "validation_examples": 8, "test_examples": 8},
        "training": {"steps": 3, "batch_size": 8, "eval_every": 3, "progress": False},
        "architectures": {"textcnn": ARCHITECTURES["textcnn"], "bilstm": ARCHITECTURES["bilstm"]}},
        base_dir=tmp_path)
    result = run_compare(config, log=lambda _: None)
    for quality in result["quality"].values():
        assert set(quality["accuracy_by_distance"]) == {2, 6}
    assert "k = 6" in (tmp_path / "probe" / "report.md").read_text()
    assert (tmp_path / "probe" / "probe_accuracy.png").is_file()


@pytest.mark.parametrize(("change", "message"), [
    ({"architectures": {"a": {"model": {}, "training": {"steps": 9}}}}, "the budget is shared"),
    ({"architectures": {}}, "architectures must map"),
    ({"architectures": {"a b": {}}}, "names a folder"),
    ({"measure": {"lengths": [1]}}, "measure.lengths"),
    ({"probe": {}}, "not base: or experiment:"),
    ({"bogus": 1}, "unknown key bogus"),
])
def test_bad_compare_configs_say_what_is_wrong(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    write_data(tmp_path)
    values = {"base": "base.yaml", "architectures": {"a": {"model": {"preset": "tiny"}}}, **change}
    with pytest.raises(ValueError, match=message):
        build_compare(values, base_dir=tmp_path)


def test_peak_memory_counts_live_activations() -> None:
    import torch

    def two_live_buffers() -> None:
        first = torch.ones(1024, 256)  # 1 MiB
        second = first * 2.0  # 1 MiB more while the first lives
        del first, second

    assert 2 * 1024 * 256 * 4 <= peak_forward_bytes(two_live_buffers) <= 2 * 1024 * 256 * 4 + 64  # + the scalar


def test_interleaved_medians_time_every_call_and_inputs_avoid_padding() -> None:
    calls: list[str] = []
    medians = interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3)
    assert calls == ["a", "b"] * 4 and set(medians) == {"a", "b"}  # one warm-up, then A, B, A, B, ...
    import torch

    ids = TaskInputs(kind="classification", vocab_size=3, pad_id=0).ids(4, 50, torch.Generator().manual_seed(0))
    assert not (ids == 0).any()


def test_the_shipped_compare_recipes_load() -> None:
    from multihead.compare import load_compare

    recipes = sorted((Path(__file__).resolve().parents[2] / "configs").glob("compare-*.yaml"))
    assert {path.name for path in recipes} >= {"compare-mr.yaml", "compare-multi30k.yaml"}
    for path in recipes:
        config = load_compare(path)
        budgets = {(e.training.steps, e.training.batch_size, e.training.max_minutes, e.training.seed)
                   for e in config.experiments.values()}
        assert len(budgets) == 1, f"{path.name}: every architecture gets the same budget"


def test_fresh_copy_keeps_the_architecture_and_stretches_the_context() -> None:
    import torch

    from multihead.compare.runner import fresh_copy
    from multihead.models import SequenceClassifier, TransformerConfig
    from multihead.models.rnn_classifier import BiLSTMClassifier, BiLSTMConfig

    short = SequenceClassifier(TransformerConfig.preset("tiny", vocab_size=20, pad_id=0, max_length=8,
                                                        positions="learned"), n_classes=3, pooling="max")
    copy = fresh_copy(short, max_length=32)
    assert type(copy) is SequenceClassifier and copy.pooling == "max" and copy.config.max_length == 32
    assert copy(torch.ones(1, 32, dtype=torch.long)).shape == (1, 3)
    recurrent = BiLSTMClassifier(BiLSTMConfig(vocab_size=20, d_embedding=4, d_hidden=3), n_classes=2, pooling="last")
    again = fresh_copy(recurrent, max_length=32)
    assert again.config == recurrent.config and again.pooling == "last"
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in recurrent.parameters())
