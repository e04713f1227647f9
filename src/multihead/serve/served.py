"""The models a server holds, one class per kind, each with the plain (blocking) calls its routes need.

These run in worker threads (``engines.py``), never on the event loop. A model is read by several threads at
once (a scheduler's, a worker's): the calls here only read the weights. Attention is captured on a *twin*: new
module objects that share the model's tensors, so the capture's hooks never touch a forward another thread runs.

Shape legend: ``B`` texts in a batch, ``T`` tokens, ``C`` classes, ``D`` embedding width.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from multihead.chat.load import ChatModel
from multihead.data import pad_batch
from multihead.embeddings import SentenceEncoder
from multihead.inspect.capture import capture_attention
from multihead.inspect.decoding import teacher_forced_attention
from multihead.inspect.maps import AttentionMaps, maps_from_capture
from multihead.inspect.texts import display_tokens
from multihead.models import DecoderLM
from multihead.tasks.seq2seq_eval import Seq2SeqModel
from multihead.tokenizers import Tokenizer

__all__ = ["Answerer", "Classifier", "Embedder", "ExtractiveSummarizer", "Generator", "Kind", "ServedModel",
           "Translator", "shared_weights_twin"]

Kind = Literal["generation", "translation", "summarization", "classification", "embedding", "question-answering"]


def shared_weights_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose modules are new objects but whose tensors (parameters, buffers, any tensor
    attribute) are the original's: hooks put on the twin never run in the original's forward passes (and the
    original's hooks are not copied)."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in (*module._parameters.values(), *module._buffers.values(), *vars(module).values()):
            if isinstance(value, Tensor):
                memo[id(value)] = value
    twin = copy.deepcopy(model, memo).eval()
    for module in twin.modules():  # hooks of the original (a capture, a test's probe) stay with the original
        for name in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
                     "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            hooks = getattr(module, name, None)
            if hooks is not None:
                hooks.clear()
    return twin


@dataclass(eq=False)
class ServedModel:
    """What every served model has: a name, a kind, the routes it answers and its attention layers."""

    name: str
    kind: Kind = field(init=False)

    @property
    def network(self) -> nn.Module:
        """The ``nn.Module`` whose attention ``/v1/attention`` shows."""
        raise NotImplementedError

    @property
    def n_layers(self) -> int:
        stacks = [m for m in self.network.modules() if hasattr(m, "layers") and isinstance(m.layers, nn.ModuleList)]
        return max((len(stack.layers) for stack in stacks), default=0)

    @property
    def n_heads(self) -> int:
        return int(self.network.config.n_heads)

    def twin(self) -> nn.Module:
        if not hasattr(self, "_twin"):
            self._twin = shared_weights_twin(self.network)
        return self._twin


@dataclass(eq=False)
class Generator(ServedModel):
    """A chat model (``multihead.chat.ChatModel``: a ``DecoderLM``, its tokenizer, chat template and end-of-turn
    tokens): chat completions and plain completions."""

    chat: ChatModel

    def __post_init__(self) -> None:
        self.kind = "generation"
        self.chat.model.eval()

    @property
    def model(self) -> DecoderLM:
        return self.chat.model

    @property
    def tokenizer(self) -> Tokenizer:
        return self.chat.tokenizer

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """End-of-turn tokens of the template (the tokenizer's EOS stops too)."""
        return tuple(self.chat.stop_token_ids)

    @property
    def network(self) -> nn.Module:
        return self.model

    @property
    def context(self) -> int:
        return int(self.model.config.max_length)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text of ``messages`` by the model's chat template, ending with the assistant's turn."""
        return self.chat.render(messages)  # type: ignore[arg-type]

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt (special tokens written in the text are recognised, none are added)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            start = self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id
            ids = [start] if start is not None else []
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def attention(self, prompt: Sequence[int], output: Sequence[int], layers: Sequence[int]) -> AttentionMaps:
        """Per-head maps of one teacher-forced forward over the prompt and the tokens the model produced."""
        sequence = [*prompt, *output]
        weights = teacher_forced_attention(self.twin(), [], sequence, layers=layers, kinds=("self",))
        tokens, special = display_tokens(self.tokenizer, sequence)
        return AttentionMaps(weights=weights, tokens={"decoder": tokens}, special={"decoder": special},
                             heads=_heads(weights),
                             title=f"{self.decode(prompt)[-100:]}  ->  {self.decode(output)[:100]}",
                             extra={"prompt_tokens": len(prompt)})


@dataclass(eq=False)
class Translator(ServedModel):
    """An encoder-decoder (translation or abstractive summarisation), decoded by beam search or sampling."""

    seq2seq: Seq2SeqModel
    task: Literal["translation", "summarization"] = "translation"

    def __post_init__(self) -> None:
        self.kind = self.task

    @property
    def network(self) -> nn.Module:
        return self.seq2seq.model

    def run(self, texts: Sequence[str], options: dict[str, Any]) -> list[str]:
        config = self.seq2seq.generation_config(**options)
        return self.seq2seq(list(texts), generation=config)

    def stream(self, text: str, options: dict[str, Any]) -> Iterator[str]:
        """The best output text so far after each decoding step (beam search may change earlier words)."""
        return self.seq2seq.stream(text, generation=self.seq2seq.generation_config(**options))

    def attention(self, text: str, output: str | None, layers: Sequence[int], options: dict[str, Any]
                  ) -> AttentionMaps:
        """Maps of one teacher-forced pass over BOS + the output (decoded now when ``output`` is None)."""
        source = self.seq2seq.encode_sources([text])[0]
        target = self.seq2seq.target_tokenizer
        answer = self.run([text], options)[0] if output is None else output
        config = self.seq2seq.generation_config(**options)
        sequence = [config.bos_id, *target.encode(answer, add_special_tokens=False)]
        weights = teacher_forced_attention(self.twin(), source, sequence, layers=layers)
        source_tokens, source_special = display_tokens(self.seq2seq.source_tokenizer, source)
        target_tokens, target_special = display_tokens(target, sequence)
        return AttentionMaps(weights=weights, tokens={"encoder": source_tokens, "decoder": target_tokens},
                             special={"encoder": source_special, "decoder": target_special}, heads=_heads(weights),
                             title=f"{text[:100]}  ->  {answer[:100]}", extra={"output": answer})


@dataclass(eq=False)
class ExtractiveSummarizer(ServedModel):
    """A ``SentenceScorer`` trained by ``train_extractive``: the best sentences of an article, in order."""

    model: nn.Module
    tokenizer: Tokenizer
    settings: dict[str, Any]

    def __post_init__(self) -> None:
        self.kind = "summarization"
        self.model.eval()

    @property
    def network(self) -> nn.Module:
        return self.model

    def run(self, texts: Sequence[str], sentences: int | None) -> list[str]:
        from multihead.data.summaries import split_sentences
        from multihead.models import top_k_in_order
        from multihead.tasks.extractive import encode_articles, score_articles, selection_size

        rule = {"k": sentences} if sentences is not None else self.settings["selection"]
        split = [split_sentences(text) for text in texts]
        present = [i for i, parts in enumerate(split) if parts]
        summaries = [""] * len(texts)
        if not present:
            return summaries
        encoded = encode_articles([split[i] for i in present], tokenizer=self.tokenizer,
                                  max_length=self.settings["max_length"],
                                  max_sentences=self.settings.get("max_sentences"))
        with torch.inference_mode():
            scores = score_articles(self.model, encoded, pad_id=self.tokenizer.pad_id or 0)
        for i, row in zip(present, scores, strict=True):
            chosen = top_k_in_order(row, selection_size(len(split[i]), rule))
            summaries[i] = " ".join(split[i][j] for j in chosen)
        return summaries

    def input_ids(self, text: str) -> list[int]:
        """The tokens the model reads for ``text`` (as one sequence, for its attention view)."""
        return self.tokenizer.encode(text, max_length=int(self.settings["max_length"]))

    def attention(self, text: str, layers: Sequence[int]) -> AttentionMaps:
        return _encoder_maps(self.twin(), self.tokenizer, self.input_ids(text), layers, title=text[:200])


@dataclass(eq=False)
class Classifier(ServedModel):
    """A text classifier: every label's probability."""

    model: nn.Module
    tokenizer: Tokenizer
    labels: list[str]
    max_length: int = 512

    def __post_init__(self) -> None:
        self.kind = "classification"
        self.model.eval()

    @property
    def network(self) -> nn.Module:
        return self.model

    def run(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Label -> probability for each text, in one forward ``(B, T) -> (B, C)``."""
        ids = self.tokenizer.encode_batch(list(texts), max_length=self.max_length)
        batch, mask = pad_batch(ids, pad_id=self.tokenizer.pad_id or 0)
        with torch.inference_mode():
            probabilities = self.model(batch, mask=mask).float().softmax(dim=-1)  # (B, C)
        return [dict(zip(self.labels, row, strict=True)) for row in probabilities.tolist()]

    def input_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, max_length=self.max_length)

    def attention(self, text: str, layers: Sequence[int]) -> AttentionMaps:
        ids = self.input_ids(text)
        scores = self.run([text])[0]
        best = max(scores, key=scores.__getitem__)
        return _encoder_maps(self.twin(), self.tokenizer, ids, layers, title=f"{text[:200]}  ->  {best} "
                             f"({scores[best]:.2f})")


@dataclass(eq=False)
class Embedder(ServedModel):
    """A sentence encoder: mean-pooled, unit-length embeddings."""

    encoder: SentenceEncoder

    def __post_init__(self) -> None:
        self.kind = "embedding"

    @property
    def network(self) -> nn.Module:
        return self.encoder.encoder

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(ids) for ids in self.encoder.tokenizer.encode_batch(list(texts),
                                                                           max_length=self.encoder.max_length))

    def run(self, texts: Sequence[str]) -> list[list[float]]:
        """``(B, D)`` embeddings of ``texts`` as lists."""
        return self.encoder.encode(list(texts), batch_size=max(len(texts), 1)).tolist()

    def input_ids(self, text: str) -> list[int]:
        return self.encoder.tokenizer.encode(text, max_length=self.encoder.max_length)

    def attention(self, text: str, layers: Sequence[int]) -> AttentionMaps:
        return _encoder_maps(self.twin(), self.encoder.tokenizer, self.input_ids(text), layers, title=text[:200])


@dataclass(eq=False)
class Answerer(ServedModel):
    """An extractive question-answering model (``multihead.tasks.qa_model.QAModel``): the best span of a context."""

    qa: Any  # QAModel

    def __post_init__(self) -> None:
        self.kind = "question-answering"

    @property
    def network(self) -> nn.Module:
        return self.qa.model

    def run(self, pairs: Sequence[tuple[str, str]], max_answer_tokens: int | None) -> list[dict[str, Any]]:
        """The best answer of each ``(question, context)``: text, character span ``[start, end)`` and score."""
        answers = self.qa.answer([q for q, _ in pairs], [c for _, c in pairs], max_answer_tokens=max_answer_tokens)
        return [{"text": "", "start": 0, "end": 0, "score": None} if a is None else
                {"text": a.text, "start": a.start, "end": a.end, "score": a.score} for a in answers]

    def input_ids(self, text: str) -> list[int]:
        return self.qa.tokenizer.encode(text, max_length=int(self.qa.settings["max_length"]))

    def attention(self, text: str, layers: Sequence[int]) -> AttentionMaps:
        return _encoder_maps(self.twin(), self.qa.tokenizer, self.input_ids(text), layers, title=text[:200])


def _encoder_maps(model: nn.Module, tokenizer: Tokenizer, ids: list[int], layers: Iterable[int], *, title: str
                  ) -> AttentionMaps:
    """Maps of one forward pass of an encoder-based model over ``ids``."""
    with torch.inference_mode(), capture_attention(model, layers=list(layers)) as captured:
        model(torch.tensor([ids]))  # (1, T)
    tokens, special = display_tokens(tokenizer, ids)
    stack = next(site.stack for site in captured.sites)
    return maps_from_capture(captured, {stack: tokens}, {stack: special}, title=title)


def _heads(weights: dict[Any, Tensor]) -> tuple[int, ...]:
    return tuple(range(next(iter(weights.values())).shape[0]))
