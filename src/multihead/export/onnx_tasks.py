"""The task front ends on onnxruntime: label texts (``predict_onnx``), translate or summarise
(:class:`OnnxTranslator`) and continue prompts (:class:`OnnxTextGenerator`) with an exported folder, the way
``multihead.tasks`` does with a model directory: same tokenization, same decoding defaults, same outputs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multihead.data import pad_batch
from multihead.errors import ConfigError
from multihead.export.decoding import generate_onnx, stream_onnx
from multihead.export.runtime import OnnxModel, load_onnx, require_architecture
from multihead.generation import GenerationConfig
from multihead.tasks.classification import Prediction
from multihead.tasks.seq2seq_eval import DEFAULT_DECODING

__all__ = ["OnnxTextGenerator", "OnnxTranslator", "load_onnx_text_generator", "load_onnx_translator", "predict_onnx"]


def predict_onnx(directory: str | Path, texts: Sequence[str], *, batch_size: int = 64,
                 threads: int | None = None) -> list[Prediction]:
    """``multihead.tasks.classification.predict`` on an exported classifier: the most likely label and every
    label's probability for each text."""
    model = load_onnx(directory, threads=threads)
    require_architecture(model, ("SequenceClassifier",), use="predict")
    if model.tokenizer is None or model.labels is None:
        raise ConfigError(f"{directory}: an exported classifier needs tokenizer.json and labels.json beside its graph")
    data = model.config.get("experiment", {}).get("data", {})
    ids = model.tokenizer.encode_batch(list(texts), max_length=int(data.get("max_length", 512)))
    predictions: list[Prediction] = []
    for start in range(0, len(ids), batch_size):
        batch_ids, mask = pad_batch(ids[start:start + batch_size], pad_id=model.tokenizer.pad_id)
        probabilities = model(batch_ids, mask)[0].float().softmax(-1)  # (B, C)
        for offset, row in enumerate(probabilities.tolist()):
            scores = dict(zip(model.labels.names, row, strict=True))
            predictions.append(Prediction(texts[start + offset], max(scores, key=scores.__getitem__), scores))
    return predictions


@dataclass
class OnnxTranslator:
    """An exported ``EncoderDecoder`` with its tokenizers: ``Seq2SeqModel``'s methods on onnxruntime."""

    model: OnnxModel

    @property
    def max_source_length(self) -> int:
        data = self.model.config.get("experiment", {}).get("data", {})
        return int(data.get("max_length", self.model.model_config.max_length))

    @property
    def max_target_length(self) -> int:
        return int(self.model.config.get("experiment", {}).get("data", {}).get("max_target_length", 128))

    def generation_config(self, **options: Any) -> GenerationConfig:
        """Decoding options on top of the recipes' defaults (beam 4), with the target tokenizer's BOS, EOS, PAD."""
        target = self.model.target_tokenizer
        values = {**DEFAULT_DECODING, "max_new_tokens": self.max_target_length,
                  **{key: value for key, value in options.items() if value is not None}}
        return GenerationConfig(bos_id=target.bos_id, eos_id=target.eos_id, pad_id=target.pad_id, **values)

    def encode_sources(self, texts: Sequence[str]) -> list[list[int]]:
        tokenizer = self.model.tokenizer
        ids = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [[*row[:self.max_source_length - 1], tokenizer.eos_id] for row in ids]

    def __call__(self, texts: Sequence[str], *, generation: GenerationConfig | None = None,
                 batch_size: int = 32) -> list[str]:
        """The best output text for each input text."""
        config = generation or self.generation_config()
        results = generate_onnx(self.model, self.encode_sources(texts), config, decode=self._decode,
                                batch_size=batch_size)
        return [hypotheses[0].text or "" for hypotheses in results]

    def stream(self, text: str, *, generation: GenerationConfig | None = None) -> Iterator[str]:
        """The current best output text after each decoding step."""
        config = generation or self.generation_config()
        yield from stream_onnx(self.model, self.encode_sources([text])[0], config, decode=self._decode)

    def _decode(self, ids: list[int]) -> str:
        return self.model.target_tokenizer.decode(ids)


@dataclass
class OnnxTextGenerator:
    """An exported ``DecoderLM`` with its tokenizer: ``TextGenerator``'s methods on onnxruntime."""

    model: OnnxModel

    def generation_config(self, **options: Any) -> GenerationConfig:
        values = {key: value for key, value in options.items() if value is not None}
        values.setdefault("eos_id", self.model.tokenizer.eos_id)
        values.setdefault("pad_id", self.model.tokenizer.pad_id)
        return GenerationConfig(**values)

    def encode_prompt(self, prompt: str) -> list[int]:
        tokenizer = self.model.tokenizer
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        if not ids:
            start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
            if start is None:
                raise ConfigError("an empty prompt needs a [BOS] or [EOS] token to start from; give a prompt")
            ids = [start]
        return ids[-self.model.model_config.max_length + 1:]

    def __call__(self, prompts: Sequence[str], *, generation: GenerationConfig | None = None) -> list[list[str]]:
        """For each prompt, its continuations (``num_return_sequences``, best first), prompt excluded."""
        config = generation or self.generation_config()
        results = generate_onnx(self.model, [self.encode_prompt(prompt) for prompt in prompts], config,
                                decode=self._decode)
        return [[hypothesis.text or "" for hypothesis in hypotheses] for hypotheses in results]

    def stream(self, prompt: str, *, generation: GenerationConfig | None = None) -> Iterator[str]:
        config = generation or self.generation_config()
        yield from stream_onnx(self.model, self.encode_prompt(prompt), config, decode=self._decode)

    def _decode(self, ids: list[int]) -> str:
        return self.model.tokenizer.decode(ids)


def load_onnx_translator(directory: str | Path, *, threads: int | None = None) -> OnnxTranslator:
    """An exported ``EncoderDecoder`` folder, ready to translate or summarise."""
    model = load_onnx(directory, threads=threads)
    require_architecture(model, ("EncoderDecoder",), use="translate and summarize")
    if model.tokenizer is None:
        raise ConfigError(f"{directory}: no tokenizer.json; export a model directory that has one")
    return OnnxTranslator(model)


def load_onnx_text_generator(directory: str | Path, *, threads: int | None = None) -> OnnxTextGenerator:
    """An exported ``DecoderLM`` folder, ready to continue prompts."""
    model = load_onnx(directory, threads=threads)
    require_architecture(model, ("DecoderLM",), use="generate")
    if model.tokenizer is None:
        raise ConfigError(f"{directory}: no tokenizer.json; export a model directory that has one")
    return OnnxTextGenerator(model)

