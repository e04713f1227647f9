"""An encoder classifier exported by ``multihead export`` (once for the module): its graph gives PyTorch's logits
at any batch size and length, and ``predict --runtime onnx`` gives ``predict``'s labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_export import SENTENCES, classifier_dir, needs_onnx

from multihead.cli.main import main
from multihead.errors import ConfigError

needs_onnx()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("classifier")
    model_dir = classifier_dir(root / "model")
    out = root / "onnx"
    assert main(["export", str(model_dir), str(out), "--format", "onnx"]) == 0
    return model_dir, out


def test_the_folder_holds_the_graph_tokenizer_labels_and_config(exported: tuple[Path, Path]) -> None:
    import onnx

    model_dir, out = exported
    manifest = json.loads((out / "onnx.json").read_text())
    assert manifest["architecture"] == "SequenceClassifier" and manifest["graphs"]["model"]["file"] == "model.onnx"
    proto = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(proto)
    assert manifest["opset"] == next(entry.version for entry in proto.opset_import if entry.domain == "")
    for name in ("tokenizer.json", "labels.json", "config.json"):
        assert (out / name).read_bytes() == (model_dir / name).read_bytes()
    dims = [[d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim] for graph_input in
            proto.graph.input]
    assert all(isinstance(size, str) for sizes in dims for size in sizes)  # batch and length are dynamic


@pytest.mark.parametrize("batch, length", [(1, 1), (3, 9), (2, 32)])
def test_logits_equal_pytorch_at_any_batch_and_length(exported: tuple[Path, Path], batch: int, length: int) -> None:
    from multihead.export import load_onnx
    from multihead.model_dir import load_model_dir

    model_dir, out = exported
    model = load_model_dir(model_dir).model
    graphs = load_onnx(out, threads=1)
    generator = torch.Generator().manual_seed(batch * 100 + length)
    ids = torch.randint(1, model.config.vocab_size, (batch, length), generator=generator)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = length
    mask = torch.arange(length)[None, :] < lengths[:, None]  # (B, T), right-padded
    ids = ids.masked_fill(~mask, 0)
    with torch.no_grad():
        expected = model(ids, mask=mask)
    (logits,) = graphs(ids, mask)
    assert logits.shape == expected.shape
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    assert expected.std() > 0.1  # wide weights: far from a constant output


def test_predict_on_onnxruntime_equals_predict(exported: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    from multihead.export import predict_onnx
    from multihead.tasks.classification import predict

    model_dir, out = exported
    expected, got = predict(model_dir, SENTENCES), predict_onnx(out, SENTENCES)
    assert [p.label for p in got] == [p.label for p in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.probabilities == pytest.approx(theirs.probabilities, abs=1e-5)
    assert main(["predict", str(out), *SENTENCES[:2], "--runtime", "onnx", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["label"] for line in lines] == [p.label for p in expected[:2]]


def test_bad_requests_fail_in_one_line(exported: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from multihead.export import export_onnx
    from multihead.model_dir import save_model_dir
    from multihead.models.textcnn import TextCNN, TextCNNConfig

    model_dir, out = exported
    assert main(["predict", str(model_dir), "a dog", "--runtime", "onnx"]) == 2  # a model directory, not an export
    assert "onnx.json: not found" in capsys.readouterr().err
    assert main(["generate", str(out), "--prompt", "a dog", "--runtime", "onnx"]) == 2
    assert "holds an exported SequenceClassifier; generate needs DecoderLM" in capsys.readouterr().err
    busy = tmp_path / "busy"
    (busy / "photos").mkdir(parents=True)
    assert main(["export", str(model_dir), str(busy)]) == 2  # refused before anything is exported
    assert "not a model directory's" in capsys.readouterr().err and list(busy.iterdir()) == [busy / "photos"]
    cnn = TextCNN(TextCNNConfig(vocab_size=20, d_embedding=8, n_filters=2), n_classes=2)
    cnn_dir = save_model_dir(tmp_path / "cnn", model=cnn)
    with pytest.raises(ConfigError, match="a TextCNN has no ONNX export"):
        export_onnx(cnn_dir, tmp_path / "cnn-onnx")
