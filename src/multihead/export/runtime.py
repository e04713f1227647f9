"""``load_onnx``: an exported folder (:func:`multihead.export.export_onnx`) as onnxruntime sessions, with the
tokenizer(s), labels and model config that travelled with the graphs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multihead.errors import CheckpointError, ConfigError
from multihead.export.onnx_export import MANIFEST_FILE, ONNX_FORMAT_VERSION
from multihead.models import TransformerConfig

__all__ = ["OnnxModel", "load_onnx"]

MAX_MANIFEST_BYTES = 1 << 20


@dataclass
class OnnxModel:
    """The graphs of one exported model, each an ``onnxruntime.InferenceSession``.

    Attributes:
        directory: the exported folder.
        manifest: ``onnx.json``: architecture, graphs with their input and output names, opset.
        config: the model directory's ``config.json`` (model sizes, the experiment it was trained by).
        model_config: the ``TransformerConfig`` of the exported model.
        sessions: graph name (``model``; or ``prefill`` and ``step``) -> session.
        tokenizer, target_tokenizer, labels: what travelled with the graphs (None when absent).
    """

    directory: Path
    manifest: dict[str, Any]
    config: dict[str, Any]
    model_config: TransformerConfig
    sessions: dict[str, Any]
    tokenizer: Any | None
    target_tokenizer: Any | None
    labels: Any | None

    @property
    def architecture(self) -> str:
        return str(self.manifest["architecture"])

    @property
    def layers(self) -> int:
        """Decoder layers (decoders only)."""
        return int(self.manifest["layers"])

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run graph ``graph`` on ``feeds`` (input name -> array); returns its outputs in manifest order."""
        return self.sessions[graph].run(None, feeds)

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """An encoder or classifier graph on ``(B, T)`` ids and bool mask; its outputs as tensors."""
        outputs = self.run("model", {"ids": ids.numpy().astype(np.int64), "mask": mask.numpy().astype(bool)})
        return [torch.from_numpy(output) for output in outputs]


def load_onnx(directory: str | Path, *, threads: int | None = None) -> OnnxModel:
    """Open the graphs of an exported folder in onnxruntime (CPU).

    Args:
        directory: written by :func:`multihead.export.export_onnx`.
        threads: intra-op threads of each session; default torch's thread count.

    Raises:
        FileNotFoundError: ``onnx.json`` or a graph file is missing.
        CheckpointError: ``onnx.json`` is damaged or of another format version.
        ModuleNotFoundError: onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError("running ONNX graphs needs onnxruntime: pip install onnxruntime",
                                  name="onnxruntime") from error
    directory = Path(directory)
    manifest = _read_json(directory / MANIFEST_FILE, what="an ONNX export's manifest")
    if manifest.get("format") != "multihead-onnx" or manifest.get("format_version") != ONNX_FORMAT_VERSION:
        raise CheckpointError(f"{directory / MANIFEST_FILE}: not a multihead ONNX export of format version "
                              f"{ONNX_FORMAT_VERSION}; export the model again with this multihead")
    config = _read_json(directory / "config.json", what="the exported model's config")
    try:
        model_config = TransformerConfig.from_dict(config["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / 'config.json'}: bad \"model\" section: {str(error)[:200]}") from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    sessions = {}
    for name, graph in manifest.get("graphs", {}).items():
        path = directory / str(graph["file"])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; {MANIFEST_FILE} lists it as the {name} graph")
        sessions[name] = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    tokenizer = target = labels = None
    if (directory / "tokenizer.json").is_file():
        from multihead.tokenizers import Tokenizer

        tokenizer = Tokenizer.load(directory / "tokenizer.json")
        target = Tokenizer.load(directory / "target_tokenizer.json") if (
            directory / "target_tokenizer.json").is_file() else tokenizer
    if (directory / "labels.json").is_file():
        from multihead.data import LabelVocab

        labels = LabelVocab.load(directory / "labels.json")
    return OnnxModel(directory=directory, manifest=manifest, config=config, model_config=model_config,
                     sessions=sessions, tokenizer=tokenizer, target_tokenizer=target, labels=labels)


def _read_json(path: Path, *, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected {what} (write one with `multihead export MODEL_DIR "
                                "OUT --format onnx`)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size:,} bytes; expected {what} of a few kilobytes")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); expected {what}") from error
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected {what} as a JSON object, got {type(value).__name__}")
    return value


def require_architecture(model: OnnxModel, kinds: tuple[str, ...], *, use: str) -> None:
    """Raise ``ConfigError`` unless ``model`` is one of ``kinds``."""
    if model.architecture not in kinds:
        raise ConfigError(f"{model.directory}: holds an exported {model.architecture}; {use} needs "
                          f"{' or '.join(kinds)}")
