"""``export_onnx``: a model directory as ONNX graphs (``torch.onnx.export``, the dynamo exporter) in a folder that
also holds the tokenizer(s), labels and config, ready for onnxruntime (:mod:`multihead.export.runtime`).

- Encoders and classifiers: one graph, ``model.onnx``: ``ids`` and ``mask`` ``(batch, length)`` -> the model's
  outputs.
- ``DecoderLM``: ``prefill.onnx`` (the prompt) and ``step.onnx`` (one token, past keys and values in, the keys and
  values one position longer out).
- ``EncoderDecoder``: ``prefill.onnx`` (encode the sources, decode the start token, cross-attention keys and values
  out) and ``step.onnx`` (one token).

Every batch, length and cache dimension is dynamic. The opset is the one the installed torch's exporter
recommends unless ``opset`` is given; ``onnx.json`` records it, the graphs' inputs and outputs, and the versions.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import multihead
from multihead.atomic import atomic_directory
from multihead.errors import ConfigError
from multihead.export.graphs import (
    EncoderGraph,
    LanguageModelPrefill,
    LanguageModelStep,
    Seq2SeqPrefill,
    Seq2SeqStep,
)
from multihead.model_dir import load_model_dir
from multihead.models import DecoderLM, Encoder, EncoderDecoder, SequenceClassifier, SpanExtractor, TokenClassifier
from multihead.models.masked_lm import MaskedLM
from multihead.quantize import QuantizedLinear

__all__ = ["MANIFEST_FILE", "ONNX_FORMAT_VERSION", "export_model", "export_onnx"]

MANIFEST_FILE = "onnx.json"
ONNX_FORMAT_VERSION = 1
ENCODER_MODELS = (SequenceClassifier, TokenClassifier, SpanExtractor, MaskedLM, Encoder)
"""Models exported as one graph over ``ids`` and ``mask``."""
_CARRIED = ("config.json", "tokenizer.json", "target_tokenizer.json", "labels.json", "tokenizer_config.json",
            "generation_config.json")
"""Files of a model directory that travel with its graphs."""
_OUTPUTS = {SequenceClassifier: ["logits"], TokenClassifier: ["logits"], SpanExtractor: ["start_logits", "end_logits"],
            MaskedLM: ["logits"], Encoder: ["hidden"]}


def export_onnx(model_dir: str | Path, out: str | Path, *, opset: int | None = None, overwrite: bool = False,
                log: Callable[[str], None] | None = None) -> Path:
    """Export the model of ``model_dir`` to ONNX graphs in ``out``, with its tokenizer(s), labels and config.

    Args:
        model_dir: a multihead model directory (``config.json``, ``model.safetensors``, ``tokenizer.json``, ...).
        out: the folder to write; written atomically; an existing folder that is not an export or a model
            directory is refused unless ``overwrite`` (then only the files written here are replaced).
        opset: ONNX opset; default the one the installed torch recommends.
        log: called with a line as each graph is exported (they take seconds to minutes).

    Returns:
        ``out``.

    Raises:
        ConfigError: the model is of a kind that has no ONNX graphs here, or ``out`` is not ours to replace.
    """
    model_dir, out = Path(model_dir), Path(out)
    loaded = load_model_dir(model_dir)
    names = _owned_names(loaded.model)
    with atomic_directory(out, overwrite=overwrite, owned=names) as staging:
        for name in _CARRIED:
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, staging / name)
        export_model(loaded.model, staging, opset=opset, log=log)
    return out


def export_model(model: nn.Module, directory: str | Path, *, opset: int | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``model``'s ONNX graphs and ``onnx.json`` into the existing ``directory``; returns the manifest."""
    directory = Path(directory)
    model = model.eval()
    if any(isinstance(module, QuantizedLinear) for module in model.modules()):
        raise ConfigError("a weight-only quantized model has no ONNX export (its int8/int4 layers run torch's own "
                          "kernels); export the floating-point model it was quantized from")
    if getattr(model, "copy_generator", None) is not None:
        raise ConfigError("an EncoderDecoder with copy_attention has no ONNX export (its copy distribution needs "
                          "the source ids at every step); export a model without it")
    if isinstance(model, DecoderLM | EncoderDecoder) and model.config.positions == "alibi":
        raise ConfigError("ALiBi decoders have no ONNX export here (their bias needs the cache position as a "
                          "number); export a model with sinusoidal, learned, rope or no positions")
    if isinstance(model, ENCODER_MODELS):
        graphs = {"model": _export_encoder(model, directory, opset, log)}
    elif isinstance(model, DecoderLM):
        graphs = _export_language_model(model, directory, opset, log)
    elif isinstance(model, EncoderDecoder):
        graphs = _export_seq2seq(model, directory, opset, log)
    else:
        raise ConfigError(f"a {type(model).__name__} has no ONNX export; exported are "
                          f"{', '.join(kind.__name__ for kind in (*ENCODER_MODELS, DecoderLM, EncoderDecoder))}")
    manifest = {
        "format": "multihead-onnx",
        "format_version": ONNX_FORMAT_VERSION,
        "architecture": type(model).__name__,
        "layers": len(model.decoder.layers) if isinstance(model, DecoderLM | EncoderDecoder) else None,
        "opset": _opset_of(directory / next(iter(graphs.values()))["file"]),
        "graphs": graphs,
        "versions": {"multihead": multihead.__version__, "torch": torch.__version__},
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _owned_names(model: nn.Module) -> set[str]:
    """The file names an export of ``model`` writes (beyond those of a model directory)."""
    stems = ["model"] if isinstance(model, ENCODER_MODELS) else ["prefill", "step"]
    return {MANIFEST_FILE, "target_tokenizer.json", *(f"{stem}.onnx" for stem in stems),
            *(f"{stem}.onnx.data" for stem in stems)}


def _dims() -> dict[str, Any]:
    return {name: torch.export.Dim(name) for name in ("batch", "length", "past", "source")}


def _export_encoder(model: nn.Module, directory: Path, opset: int | None, log: Callable[[str], None] | None
                    ) -> dict[str, Any]:
    ids = torch.tensor([[2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 0, 0]]) % model.config.vocab_size  # (2, 6)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])  # (2, 6)
    dims = _dims()
    shapes = {"ids": {0: dims["batch"], 1: dims["length"]}, "mask": {0: dims["batch"], 1: dims["length"]}}
    outputs = _OUTPUTS[next(kind for kind in _OUTPUTS if isinstance(model, kind))]
    return _export(EncoderGraph(model), (ids, mask), shapes, ["ids", "mask"], outputs, directory / "model.onnx",
                   opset, log)


def _cache_names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}.{layer}.{kind}" for layer in range(layers) for kind in ("key", "value")]


def _export_language_model(model: DecoderLM, directory: Path, opset: int | None,
                           log: Callable[[str], None] | None) -> dict[str, Any]:
    layers, dims = len(model.decoder.layers), _dims()
    batch, length, past_length = dims["batch"], dims["length"], dims["past"]
    ids = torch.tensor([[0, 3, 4, 5], [6, 7, 8, 9]]) % model.config.vocab_size  # (2, 4), the first row left-padded
    mask = torch.tensor([[False, True, True, True], [True] * 4])  # (2, 4)
    positions = torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3]])  # (2, 4)
    prefill = _export(LanguageModelPrefill(model), (ids, mask, positions),
                      {name: {0: batch, 1: length} for name in ("ids", "mask", "position_ids")},
                      ["ids", "mask", "position_ids"], ["logits", *_cache_names("present", layers)],
                      directory / "prefill.onnx", opset, log)
    with torch.no_grad():
        _, *past = LanguageModelPrefill(model)(ids, mask, positions)
    step_mask = torch.cat((mask, mask.new_ones(2, 1)), dim=1)  # (2, 5)
    step = _export(LanguageModelStep(model), (ids[:, :1] + 1, step_mask, positions[:, -1:] + 1, past),
                   {"ids": {0: batch}, "mask": {0: batch, 1: length}, "position_ids": {0: batch},
                    "past": [{0: batch, 2: past_length}] * len(past)},
                   ["ids", "mask", "position_ids", *_cache_names("past", layers)],
                   ["logits", *_cache_names("present", layers)], directory / "step.onnx", opset, log)
    return {"prefill": prefill, "step": step}


def _export_seq2seq(model: EncoderDecoder, directory: Path, opset: int | None,
                    log: Callable[[str], None] | None) -> dict[str, Any]:
    layers, dims = len(model.decoder.layers), _dims()
    batch, source_length, length, past_length = dims["batch"], dims["source"], dims["length"], dims["past"]
    sources = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 0, 0]]) % model.config.vocab_size  # (2, 5), right-padded
    source_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])  # (2, 5)
    targets = torch.tensor([[1, 5], [1, 6]]) % model.config.output_vocab_size  # (2, 2)
    prefill = _export(Seq2SeqPrefill(model), (sources, source_mask, targets),
                      {"source_ids": {0: batch, 1: source_length}, "source_mask": {0: batch, 1: source_length},
                       "target_ids": {0: batch, 1: length}},
                      ["source_ids", "source_mask", "target_ids"],
                      ["logits", *_cache_names("present", layers), *_cache_names("cross", layers)],
                      directory / "prefill.onnx", opset, log)
    with torch.no_grad():
        outputs = Seq2SeqPrefill(model)(sources, source_mask, targets)
    past, cross = list(outputs[1:1 + 2 * layers]), list(outputs[1 + 2 * layers:])
    step = _export(Seq2SeqStep(model), (targets[:, :1], source_mask, past, cross),
                   {"ids": {0: batch}, "source_mask": {0: batch, 1: source_length},
                    "past": [{0: batch, 2: past_length}] * len(past),
                    "cross": [{0: batch, 2: source_length}] * len(cross)},
                   ["ids", "source_mask", *_cache_names("past", layers), *_cache_names("cross", layers)],
                   ["logits", *_cache_names("present", layers)], directory / "step.onnx", opset, log)
    return {"prefill": prefill, "step": step}


def _export(module: nn.Module, args: tuple[Any, ...], shapes: dict[str, Any], inputs: list[str], outputs: list[str],
            path: Path, opset: int | None, log: Callable[[str], None] | None) -> dict[str, Any]:
    """Export ``module`` called with ``args`` to ``path``; returns the graph's entry of the manifest."""
    if log is not None:
        log(f"exporting {path.name} ({type(module).__name__}) with torch.onnx.export (dynamo)")
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(module.eval(), args, dynamo=True, dynamic_shapes=shapes, input_names=inputs,
                                    output_names=outputs, opset_version=opset, optimize=True, verbose=False)
        assert program is not None
        program.save(str(path))
    return {"file": path.name, "inputs": inputs, "outputs": outputs}


def _opset_of(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress prints and its warnings about optional packages (torchvision) stay out of the
    caller's output."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)

