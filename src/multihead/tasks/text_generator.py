"""Use a saved language model: continue prompts (all decoding options, streaming) and measure perplexity."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from multihead.experiment import build_experiment
from multihead.generation import GenerationConfig, generate, stream
from multihead.model_dir import load_model_dir
from multihead.models import DecoderLM
from multihead.tokenizers import Tokenizer

__all__ = ["TextGenerator", "evaluate_language_model", "load_text_generator"]


@dataclass
class TextGenerator:
    """A loaded ``DecoderLM`` and its tokenizer."""

    model: DecoderLM
    tokenizer: Tokenizer
    config: dict[str, Any]

    def generation_config(self, **options: Any) -> GenerationConfig:
        """``GenerationConfig`` with this tokenizer's EOS and PAD ids; unset (None) options keep their defaults."""
        values = {key: value for key, value in options.items() if value is not None}
        values.setdefault("eos_id", self.tokenizer.eos_id)
        values.setdefault("pad_id", self.tokenizer.pad_id)
        return GenerationConfig(**values)

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        if not ids:
            bos = self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id
            if bos is None:
                raise ValueError("an empty prompt needs a [BOS] or [EOS] token to start from; give a prompt")
            ids = [bos]
        return ids[-self.model.config.max_length + 1:]

    def __call__(self, prompts: Sequence[str], *, generation: GenerationConfig | None = None) -> list[list[str]]:
        """For each prompt, the continuations (``num_return_sequences`` of them, best first), prompt excluded."""
        config = generation or self.generation_config()
        with torch.inference_mode():
            results = generate(self.model, [self.encode_prompt(p) for p in prompts], config, decode=self._decode)
        return [[hypothesis.text or "" for hypothesis in hypotheses] for hypotheses in results]

    def stream(self, prompt: str, *, generation: GenerationConfig | None = None) -> Iterator[str]:
        """The continuation so far after each decoding step."""
        config = generation or self.generation_config()
        with torch.inference_mode():
            yield from stream(self.model, self.encode_prompt(prompt), config, decode=self._decode)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def load_text_generator(model_dir: str | Path) -> TextGenerator:
    """Load a model directory holding a ``DecoderLM`` and its ``tokenizer.json``."""
    loaded = load_model_dir(model_dir)
    if not isinstance(loaded.model, DecoderLM):
        raise ValueError(f"{model_dir}: holds a {type(loaded.model).__name__}, expected a DecoderLM (a language model)")
    if loaded.tokenizer is None:
        raise ValueError(f"{model_dir}: no tokenizer.json; expected the tokenizer the model was trained with")
    return TextGenerator(model=loaded.model, tokenizer=loaded.tokenizer, config=loaded.config)


def evaluate_language_model(model_dir: str | Path, *, split: str = "validation", file: str | Path | None = None,
                            batch_size: int = 64) -> dict[str, Any]:
    """Loss (nats per token), perplexity and bits per character over a text file or a split of the model's data,
    in consecutive windows of the model's context (every token predicted once)."""
    from multihead.tasks.language_model import LanguageModelTask, _read_text, encode_stream, load_texts

    generator = load_text_generator(model_dir)
    if file is not None:
        text = _read_text(str(file), "utf-8")
    else:
        experiment = generator.config.get("experiment")
        if experiment is None:
            raise ValueError(f"{model_dir}: config.json records no experiment; pass a text file")
        texts = load_texts(build_experiment(experiment))
        if split not in texts:
            raise ValueError(f"split {split!r} is not known for this model's data; known: {sorted(texts)}")
        text = texts[split]
    tokens = encode_stream(generator.tokenizer, text)
    task = LanguageModelTask(characters_per_token=tokens.characters / max(len(tokens.ids), 1))
    with torch.inference_mode():
        scores = task.evaluate(generator.model, tokens.batches(length=generator.model.config.max_length,
                                                               batch_size=batch_size))
    return {"task": "language-model", "split": split if file is None else str(file), "tokens": len(tokens.ids),
            "characters": tokens.characters, **scores,
            "nats_per_character": scores["bits_per_character"] * math.log(2)}
