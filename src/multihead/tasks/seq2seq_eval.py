"""Use a saved sequence-to-sequence model: translate or summarise texts, and score a split with BLEU/chrF/ROUGE."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from multihead.errors import CheckpointError
from multihead.experiment import recorded_split
from multihead.generation import GenerationConfig, generate, stream
from multihead.generation.state import ENCODER_DECODERS
from multihead.inference_dtype import cast_for_inference
from multihead.model_dir import load_model_dir
from multihead.models import EncoderDecoder
from multihead.models.rnn_seq2seq import RNNEncoderDecoder
from multihead.tokenizers import Tokenizer

__all__ = ["Seq2SeqModel", "evaluate_seq2seq", "load_seq2seq"]

DEFAULT_DECODING = {"num_beams": 4, "length_penalty": 1.0}
"""Beam search as the recipes report it: 4 beams, length penalty 1.0; ``max_new_tokens`` defaults to the
``data.max_target_length`` the model was trained with."""


@dataclass
class Seq2SeqModel:
    """A loaded ``EncoderDecoder`` (or ``RNNEncoderDecoder``) with its tokenizers and the experiment it was
    trained by."""

    model: EncoderDecoder | RNNEncoderDecoder
    source_tokenizer: Tokenizer
    target_tokenizer: Tokenizer
    config: dict[str, Any]

    @property
    def max_source_length(self) -> int:
        data = self.config.get("experiment", {}).get("data", {})
        return int(data["max_length"] if "max_length" in data else getattr(self.model.config, "max_length", 128))

    @property
    def max_target_length(self) -> int:
        return int(self.config.get("experiment", {}).get("data", {}).get("max_target_length", 128))

    def generation_config(self, **options: Any) -> GenerationConfig:
        """Decoding options on top of the experiment's ``decoding`` section and :data:`DEFAULT_DECODING`, with this
        model's BOS, EOS and PAD ids."""
        target = self.target_tokenizer
        values = {**DEFAULT_DECODING, "max_new_tokens": self.max_target_length,
                  **self.config.get("experiment", {}).get("decoding", {}),
                  **{k: v for k, v in options.items() if v is not None}}
        return GenerationConfig(bos_id=target.bos_id, eos_id=target.eos_id, pad_id=target.pad_id, **values)

    def encode_sources(self, texts: Sequence[str]) -> list[list[int]]:
        eos = self.source_tokenizer.eos_id
        assert eos is not None
        ids = self.source_tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [[*x[:self.max_source_length - 1], eos] for x in ids]

    def __call__(self, texts: Sequence[str], *, generation: GenerationConfig | None = None,
                 batch_size: int = 32) -> list[str]:
        """The best output text for each input text."""
        config = generation or self.generation_config()
        with torch.inference_mode():
            results = generate(self.model, self.encode_sources(texts), config, decode=self._decode,
                               batch_size=batch_size)
        return [hypotheses[0].text or "" for hypotheses in results]

    def stream(self, text: str, *, generation: GenerationConfig | None = None) -> Iterator[str]:
        """The current best output text after each decoding step (the last one is the answer)."""
        config = generation or self.generation_config()
        with torch.inference_mode():
            yield from stream(self.model, self.encode_sources([text])[0], config, decode=self._decode)

    def _decode(self, ids: list[int]) -> str:
        return self.target_tokenizer.decode(ids)


def load_seq2seq(model_dir: str | Path, *, dtype: str | torch.dtype | None = None) -> Seq2SeqModel:
    """Load a model directory written by ``train_seq2seq`` (or any ``EncoderDecoder`` with a tokenizer); ``dtype``
    ``"bfloat16"`` decodes in bfloat16 (:func:`~multihead.inference_dtype.cast_for_inference`)."""
    loaded = load_model_dir(model_dir)
    if not isinstance(loaded.model, ENCODER_DECODERS):
        raise CheckpointError(f"{model_dir}: holds a {type(loaded.model).__name__}, expected an EncoderDecoder "
                              "(a translation or summarisation model)")
    if loaded.tokenizer is None:
        raise CheckpointError(f"{model_dir}: no tokenizer.json; expected the tokenizer the model was trained with")
    target_file = Path(model_dir) / "target_tokenizer.json"
    target = Tokenizer.load(target_file) if target_file.is_file() else loaded.tokenizer
    model = cast_for_inference(loaded.model, dtype, where=str(model_dir))
    return Seq2SeqModel(model=model, source_tokenizer=loaded.tokenizer, target_tokenizer=target,  # type: ignore[arg-type]
                        config=loaded.config)


def evaluate_seq2seq(model_dir: str | Path, *, split: str = "test", data: tuple[str, str] | None = None,
                     decoding: Mapping[str, Any] | None = None, batch_size: int = 32,
                     limit: int | None = None,
                     score: Callable[[list[str], list[str]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Decode a split of the model's own data set (or ``data``: a source file and a reference file) and score it.

    ``score(hypotheses, references)`` gives the figures: :func:`bleu_chrf_scores` (the default: sacreBLEU's
    BLEU and chrF with their signatures) or :func:`rouge_scores` (ROUGE-1/2/L F1, for summaries).
    ``decoding`` holds ``GenerationConfig`` options on top of :meth:`Seq2SeqModel.generation_config`'s.

    Returns:
        ``{"task", "split", "sentences", "seconds", "hypotheses", ...scores}``.
    """
    from multihead.data import read_parallel
    from multihead.tasks.seq2seq import load_pairs
    model = load_seq2seq(model_dir)
    task = model.config.get("task", "translation")
    if data is not None:
        pairs = list(read_parallel(*data))
    else:
        pairs = recorded_split(model.config, split, load_pairs, where=model_dir)
    pairs = pairs[:limit] if limit else pairs
    sources, references = [p.text for p in pairs], [p.label or "" for p in pairs]
    started = time.perf_counter()
    hypotheses = model(sources, generation=model.generation_config(**(decoding or {})), batch_size=batch_size)
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {"task": task, "split": split if data is None else str(data[0]),
                              "sentences": len(pairs), "seconds": seconds}
    report.update((score or bleu_chrf_scores)(hypotheses, references))
    report["hypotheses"] = hypotheses
    return report


def bleu_chrf_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """sacreBLEU's BLEU and chrF of detokenised outputs, with their signatures."""
    from multihead.text_metrics import bleu, chrf

    scored_bleu, scored_chrf = bleu(hypotheses, references), chrf(hypotheses, references)
    return {"bleu": scored_bleu.score, "bleu_signature": scored_bleu.signature,
            "chrf": scored_chrf.score, "chrf_signature": scored_chrf.signature}


def rouge_scores(hypotheses: list[str], references: list[str]) -> dict[str, Any]:
    """ROUGE-1/2/L F1 (with stemming) under the report key ``rouge``."""
    from multihead.text_metrics import rouge

    return {"rouge": rouge(hypotheses, references)}
