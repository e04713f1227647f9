"""TextCNN and BiLSTM classifiers: against plain references, padding invariance, overfitting, configs, files, and
``train_classifier`` with ``model.architecture``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.data import pad_batch
from multihead.experiment import build_experiment
from multihead.model_dir import load_model_dir, save_model_dir
from multihead.models.rnn_classifier import BiLSTMClassifier, BiLSTMConfig
from multihead.models.textcnn import TextCNN, TextCNNConfig
from multihead.tasks.classification import build_classifier, predict, train_classifier
from threads import one_intra_op_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)

PAD, VOCAB = 0, 30


def textcnn(**changes: object) -> TextCNN:
    values: dict[str, object] = {"vocab_size": VOCAB, "pad_id": PAD, "d_embedding": 8, "widths": (2, 3),
                                 "n_filters": 5, "dropout": 0.0}
    return TextCNN(TextCNNConfig(**{**values, **changes}), n_classes=3)


def bilstm(pooling: str = "max", **changes: object) -> BiLSTMClassifier:
    values: dict[str, object] = {"vocab_size": VOCAB, "pad_id": PAD, "d_embedding": 8, "d_hidden": 6, "dropout": 0.0}
    return BiLSTMClassifier(BiLSTMConfig(**{**values, **changes}), n_classes=3, pooling=pooling)  # type: ignore[arg-type]


def reference_textcnn_features(model: TextCNN, ids: list[int]) -> torch.Tensor:
    """Kim's wide convolution written as loops in float64: every window that overlaps a real token."""
    vectors = model.embedding.weight.double()[ids]  # (T, E)
    features = []
    for convolution, width in zip(model.convolutions, model.config.widths, strict=True):
        weight, bias = convolution.weight.double(), convolution.bias.double()  # (F, E, w), (F,)
        padded = torch.cat([torch.zeros(width - 1, vectors.shape[1], dtype=torch.float64), vectors,
                            torch.zeros(width - 1, vectors.shape[1], dtype=torch.float64)])  # (T + 2w - 2, E)
        windows = [torch.einsum("few,we->f", weight, padded[start:start + width]) + bias
                   for start in range(len(ids) + width - 1)]
        features.append(torch.stack(windows).relu().amax(dim=0))  # (F,)
    return torch.cat(features)


def test_textcnn_equals_a_plain_loop_reference() -> None:
    torch.manual_seed(0)
    model = textcnn().eval()
    for ids in ([5, 6, 7, 8, 9], [4], [3, 11]):
        with torch.no_grad():
            ours = model.features(torch.tensor([ids]))[0].double()
        torch.testing.assert_close(ours, reference_textcnn_features(model, ids), rtol=1e-5, atol=1e-6)


def test_bilstm_equals_the_lstm_run_on_each_sequence_alone() -> None:
    torch.manual_seed(0)
    model = bilstm("last").eval()
    ids = [5, 6, 7, 8]
    with torch.no_grad():
        outputs, _ = model.lstm(model.embedding(torch.tensor([ids])))  # (1, T, 2H)
        expected = {"last": torch.cat((outputs[0, -1, :6], outputs[0, 0, 6:])), "max": outputs[0].amax(0),
                    "mean": outputs[0].mean(0)}
        for pooling, vector in expected.items():
            model.pooling = pooling
            torch.testing.assert_close(model.features(torch.tensor([ids]))[0], vector)


@pytest.mark.parametrize("build", [textcnn, lambda: bilstm("last"), lambda: bilstm("max"), lambda: bilstm("mean")])
@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_an_example_scores_the_same_alone_or_padded_in_a_batch(build: object, lengths: list[int], seed: int) -> None:
    torch.manual_seed(0)
    model = build().eval()  # type: ignore[operator]
    generator = torch.Generator().manual_seed(seed)
    sequences = [torch.randint(1, VOCAB, (n,), generator=generator).tolist() for n in lengths]
    ids, mask = pad_batch(sequences, pad_id=PAD)
    with torch.no_grad():
        batched = model(ids, mask=mask)  # (B, C)
        alone = torch.cat([model(torch.tensor([s])) for s in sequences])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build", [lambda: textcnn(d_embedding=16, n_filters=16), lambda: bilstm("last", d_hidden=16)])
def test_each_baseline_overfits_a_tiny_task(build: object) -> None:
    """24 random sequences with random labels of 3 classes: memorised to near-zero loss."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    sequences = [torch.randint(1, VOCAB, (int(n),), generator=generator).tolist()
                 for n in torch.randint(3, 10, (24,), generator=generator)]
    ids, mask = pad_batch(sequences, pad_id=PAD)
    labels = torch.randint(0, 3, (24,), generator=generator)
    model = build()  # type: ignore[operator]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(ids, mask=mask), labels)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids, mask=mask).argmax(-1), labels)


def test_configs_validate_and_name_the_bad_value() -> None:
    with pytest.raises(ValueError, match="widths"):
        TextCNNConfig(vocab_size=10, widths=(3, 0))
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        TextCNNConfig(vocab_size=10, dropout=1.5)
    with pytest.raises(ValueError, match="pad_id"):
        BiLSTMConfig(vocab_size=10, pad_id=10)
    with pytest.raises(ValueError, match="d_hidden must be >= 1, got 0"):
        BiLSTMConfig(vocab_size=10, d_hidden=0)
    with pytest.raises(ValueError, match="unknown TextCNNConfig keys"):
        TextCNNConfig.from_dict({"vocab_size": 10, "kernel": 3})
    with pytest.raises(ValueError, match="pooling must be one of"):
        BiLSTMClassifier(BiLSTMConfig(vocab_size=10), n_classes=2, pooling="cls")  # type: ignore[arg-type]


@pytest.mark.parametrize("model", [textcnn(), bilstm("mean")])
def test_model_directories_rebuild_the_baseline(tmp_path: Path, model: torch.nn.Module) -> None:
    save_model_dir(tmp_path / "m", model=model.eval())
    loaded = load_model_dir(tmp_path / "m")
    assert type(loaded.model) is type(model) and loaded.model.config == model.config
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids), model(ids))
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model"]["vocab_size"] == VOCAB


def experiment(tmp_path: Path, model: dict[str, object]) -> object:
    lines = [f"{'good' if i % 2 else 'bad'} film number {i}\t{'pos' if i % 2 else 'neg'}" for i in range(40)]
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "\n".join(lines) + "\n")
    return build_experiment({
        "task": "classification", "output_dir": str(tmp_path / "run"),
        "data": {"train": str(tmp_path / "train.tsv"), "test": str(tmp_path / "train.tsv"), "max_length": 16},
        "tokenizer": {"kind": "word", "vocab_size": 100, "min_frequency": 1},
        "model": model,
        "training": {"steps": 40, "batch_size": 8, "eval_every": 20, "lr": 1e-2, "progress": False}})


@pytest.mark.parametrize("model", [
    {"architecture": "textcnn", "d_embedding": 16, "widths": [2, 3], "n_filters": 8},
    {"architecture": "bilstm", "d_embedding": 16, "d_hidden": 8, "pooling": "last"}])
def test_train_classifier_builds_and_saves_the_named_architecture(tmp_path: Path, model: dict[str, object]) -> None:
    config = experiment(tmp_path, model)
    result = train_classifier(config, log=lambda _: None)  # type: ignore[arg-type]
    assert result.test_report is not None and result.test_report["accuracy"] == 1.0
    loaded = load_model_dir(tmp_path / "run" / "best")
    assert type(loaded.model).__name__ == {"textcnn": "TextCNN", "bilstm": "BiLSTMClassifier"}[model["architecture"]]
    assert [p.label for p in predict(tmp_path / "run" / "best", ["good film number 3", "bad film number 2"])] == [
        "pos", "neg"]


def test_build_classifier_rejects_what_does_not_apply(tmp_path: Path) -> None:
    config = experiment(tmp_path, {"architecture": "textcnn", "pooling": "mean"})
    with pytest.raises(ValueError, match="pooling does not apply to textcnn"):
        build_classifier(config, vocab_size=10, pad_id=0, n_classes=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="architecture must be one of"):
        build_experiment({"data": {"train": "x.tsv"}, "model": {"architecture": "cnn"}})
