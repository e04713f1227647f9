"""``ServerState``: what one app holds: the models by name, a scheduler per generation model, a worker per model,
the metrics, and the last completions (for their attention view)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from multihead.serve.engines import ModelWorker, TokenGenerator
from multihead.serve.errors import APIError
from multihead.serve.metrics import ServerMetrics
from multihead.serve.served import Generator, Kind, ServedModel
from multihead.serve.settings import ServeSettings

__all__ = ["RecentCompletion", "SchedulerFactory", "ServerState", "default_scheduler"]

SchedulerFactory = Callable[[Generator, ServeSettings], TokenGenerator]

_KIND_WORDS = {"generation": "a text generation", "translation": "a translation", "summarization": "a summarisation",
               "classification": "a classification", "embedding": "a sentence embedding",
               "question-answering": "a question-answering"}


def default_scheduler(model: Generator, settings: ServeSettings) -> TokenGenerator:
    """The project's continuous-batching ``Scheduler`` over ``settings.decoding_slots`` rows, each with the
    context the limits allow (prompt + output), never more than the model's."""
    from multihead.generation.scheduler import Scheduler

    context = min(model.context, settings.max_prompt_tokens + settings.max_tokens)
    return Scheduler(model.model, slots=settings.decoding_slots, max_length=context, max_queue=settings.max_queue,
                     decode=model.decode)


@dataclass(frozen=True)
class RecentCompletion:
    """A finished completion kept for ``/v1/attention``: the model, the prompt and each choice's tokens."""

    model: str
    prompt: list[int]
    outputs: list[list[int]]


@dataclass(eq=False)
class ServerState:
    models: Mapping[str, ServedModel]
    settings: ServeSettings
    scheduler_factory: SchedulerFactory = default_scheduler
    metrics: ServerMetrics = field(init=False)
    schedulers: dict[str, TokenGenerator] = field(default_factory=dict)
    workers: dict[str, ModelWorker] = field(default_factory=dict)
    recent: OrderedDict[str, RecentCompletion] = field(default_factory=OrderedDict)
    closed: bool = False

    def __post_init__(self) -> None:
        self.metrics = ServerMetrics(lambda: {name: s.stats() for name, s in self.schedulers.items()},
                                     lambda: {name: w.pending for name, w in self.workers.items()})
        try:
            for name, model in self.models.items():
                if isinstance(model, Generator):
                    self.schedulers[name] = self.scheduler_factory(model, self.settings)
                self.workers[name] = ModelWorker(
                    name, max_queue=self.settings.max_queue, batch_size=self.settings.micro_batch_size,
                    batch_wait=self.settings.micro_batch_wait,
                    on_batch=lambda size, name=name: self.metrics.batch_size.labels(name).observe(size))
        except BaseException:
            self.close()
            raise

    def model(self, name: str, kinds: Sequence[Kind], route: str) -> Any:
        """The model called ``name`` if it serves ``route`` (404 for an unknown name, 400 for the wrong kind)."""
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise APIError(404, f"model {name[:100]!r} is not served here; models: {known}", param="model",
                           code="model_not_found")
        if model.kind not in kinds:
            wanted = " or ".join(_KIND_WORDS[kind] for kind in kinds)
            raise APIError(400, f"model {name!r} is {_KIND_WORDS[model.kind]} model; {route} needs {wanted} model",
                           param="model", code="wrong_model_kind")
        return model

    def remember(self, completion_id: str, model: str, prompt: list[int], outputs: list[list[int]]) -> None:
        """Keep a finished completion for its attention view (the oldest are forgotten first)."""
        if self.settings.attention_cache == 0:
            return
        self.recent[completion_id] = RecentCompletion(model, list(prompt), outputs)
        while len(self.recent) > self.settings.attention_cache:
            self.recent.popitem(last=False)

    def close(self) -> None:
        """Stop every scheduler and worker (requests still running fail)."""
        self.closed = True
        for scheduler in self.schedulers.values():
            scheduler.close(timeout=10)
        for worker in self.workers.values():
            worker.close()
