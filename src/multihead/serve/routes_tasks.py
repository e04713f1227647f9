"""Task routes: ``POST /v1/classify``, ``/v1/translate``, ``/v1/summarize`` (beam search or sampling, optionally
streamed) and ``/v1/attention`` (the per-head maps of one input or of a completion this server produced)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from multihead.inspect.html_view import AttentionView, view_data
from multihead.inspect.maps import AttentionMaps
from multihead.serve.errors import APIError, error_body
from multihead.serve.routes_openai import check_texts, read_json, server_state
from multihead.serve.schemas import (
    AnswerRequest,
    AttentionRequest,
    ClassifyRequest,
    Seq2SeqRequest,
    SummarizeRequest,
    TranslateRequest,
)
from multihead.serve.served import Answerer, Classifier, ExtractiveSummarizer, Generator, ServedModel, Translator
from multihead.serve.sse import DONE, ClientGoneError, EventStream, event, unless_disconnected, within
from multihead.serve.state import ServerState

__all__ = ["choose_layers", "router"]

router = APIRouter()
T = TypeVar("T")


async def _run(request: Request, state: ServerState, work: Awaitable[T]) -> T:
    """Await a worker's answer within the request timeout; the work is cancelled if the client goes away."""
    try:
        return await asyncio.wait_for(unless_disconnected(request, work), state.settings.request_timeout)
    except ClientGoneError as error:
        state.metrics.disconnects.labels(request.url.path).inc()
        raise APIError(499, "the client closed the connection", code="client_closed") from error
    except asyncio.TimeoutError as error:
        raise APIError(504, f"the request ran past the server's limit of {state.settings.request_timeout:g} s",
                       code="timeout") from error


@router.post("/v1/classify")
async def classify(request: Request) -> dict[str, Any]:
    """Every label's probability for each text, most likely first."""
    body = ClassifyRequest.model_validate(await read_json(request))
    state = server_state(request)
    model: Classifier = state.model(body.model, ("classification",), "/v1/classify")
    texts = body.texts
    check_texts(texts, state.settings.max_inputs)
    results = await _run(request, state, state.workers[body.model].batched("classify", model.run, texts))
    data = []
    for index, scores in enumerate(results):
        ranked = dict(sorted(scores.items(), key=lambda pair: -pair[1]))
        data.append({"index": index, "label": next(iter(ranked)), "probabilities": ranked})
    return {"object": "list", "model": body.model, "data": data}


@router.post("/v1/answer")
async def answer(request: Request) -> dict[str, Any]:
    """The best answer span of each question in its context (micro-batched)."""
    body = AnswerRequest.model_validate(await read_json(request))
    state = server_state(request)
    model: Answerer = state.model(body.model, ("question-answering",), "/v1/answer")
    pairs = body.pairs
    check_texts([q for q, _ in pairs], state.settings.max_inputs, "question")
    check_texts([c for _, c in pairs], state.settings.max_inputs, "context")
    limit = body.max_answer_tokens
    results = await _run(request, state, state.workers[body.model].batched(
        f"answer:{limit}", lambda batch: model.run(batch, limit), pairs))
    return {"object": "list", "model": body.model, "data": [{"index": i, **row} for i, row in enumerate(results)]}


@router.post("/v1/translate", response_model=None)
async def translate(request: Request) -> Any:
    body = TranslateRequest.model_validate(await read_json(request))
    return await _seq2seq(request, body, ("translation",), "/v1/translate")


@router.post("/v1/summarize", response_model=None)
async def summarize(request: Request) -> Any:
    body = SummarizeRequest.model_validate(await read_json(request))
    return await _seq2seq(request, body, ("summarization",), "/v1/summarize")


async def _seq2seq(request: Request, body: Seq2SeqRequest, kinds: tuple[Any, ...], route: str) -> Any:
    """Translations or summaries of ``body.input``: one answer, or a stream of the best text so far."""
    state = server_state(request)
    model: Translator | ExtractiveSummarizer = state.model(body.model, kinds, route)
    texts = body.texts
    check_texts(texts, state.settings.max_inputs)
    if body.max_tokens is not None and body.max_tokens > state.settings.max_tokens:
        raise APIError(422, f"max_tokens: at most {state.settings.max_tokens} tokens per request, got "
                       f"{body.max_tokens}", param="max_tokens", code="limit_exceeded")
    worker = state.workers[body.model]
    sentences = getattr(body, "sentences", None)
    if isinstance(model, ExtractiveSummarizer):
        decoding = {key for key in body.model_fields_set if key not in ("model", "input", "stream", "sentences")}
        if decoding:
            name = sorted(decoding)[0]
            raise APIError(422, f"{name}: an extractive summariser picks sentences and takes no decoding options",
                           param=name, code="invalid_value")
        outputs = await _run(request, state, worker.call(model.run, texts, sentences))
        if body.stream:
            return EventStream(_single(outputs[0]))
        return _texts(body.model, outputs)
    if sentences is not None:
        raise APIError(422, "sentences: only an extractive summariser picks a number of sentences", param="sentences",
                       code="invalid_value")
    options = body.options()
    try:
        model.seq2seq.generation_config(**options)
    except ValueError as error:
        raise APIError(422, str(error).replace("GenerationConfig.", ""), code="invalid_value") from error
    if not body.stream:
        outputs = await _run(request, state, worker.call(model.run, texts, options))
        return _texts(body.model, outputs)

    async def events() -> AsyncIterator[bytes]:
        text = ""
        try:
            async for text in within(worker.stream(lambda: model.stream(texts[0], options)),
                                     state.settings.request_timeout):
                yield event({"index": 0, "text": text, "finish_reason": None})
        except asyncio.TimeoutError:
            yield event(error_body(504, f"the request ran past the server's limit of "
                                   f"{state.settings.request_timeout:g} s", code="timeout"))
            return
        yield event({"index": 0, "text": text, "finish_reason": "stop"})
        yield DONE

    worker.check_room()  # a full queue is refused now (503), not after the stream's headers were sent
    return EventStream(events(), on_disconnect=lambda: state.metrics.disconnects.labels(route).inc())


async def _single(text: str) -> AsyncIterator[bytes]:
    yield event({"index": 0, "text": text, "finish_reason": "stop"})
    yield DONE


def _texts(name: str, outputs: Sequence[str]) -> dict[str, Any]:
    return {"object": "list", "model": name, "data": [{"index": i, "text": text} for i, text in enumerate(outputs)]}


def choose_layers(n_layers: int, values_per_layer: int, limit: int, asked: Sequence[int] | None) -> list[int]:
    """The layers one attention answer holds: those asked (all must fit in ``limit`` weights), else every layer
    if they fit, else evenly spaced layers that do (first and last included)."""
    if asked is not None:
        bad = [layer for layer in asked if layer >= n_layers]
        if bad:
            raise APIError(422, f"layers: layer {bad[0]} does not exist; this model has layers 0..{n_layers - 1}",
                           param="layers", code="invalid_value")
        chosen = sorted(set(asked))
        if len(chosen) * values_per_layer > limit:
            raise APIError(422, f"layers: {len(chosen)} layers of this input hold {len(chosen) * values_per_layer:,} "
                           f"weights; the server returns at most {limit:,}: ask for fewer layers", param="layers",
                           code="limit_exceeded")
        return chosen
    fit = limit // max(values_per_layer, 1)
    if fit < 1:
        raise APIError(422, f"input: one layer of this input holds {values_per_layer:,} weights, more than the "
                       f"server's limit of {limit:,}; use a shorter text", param="input", code="limit_exceeded")
    if fit >= n_layers:
        return list(range(n_layers))
    if fit == 1:
        return [n_layers - 1]
    return sorted({round(i * (n_layers - 1) / (fit - 1)) for i in range(fit)})


@router.post("/v1/attention", response_model=None)
async def attention(request: Request) -> Any:
    """Per-head attention maps (JSON for scripts, or the HTML ``AttentionView`` page)."""
    body = AttentionRequest.model_validate(await read_json(request))
    state = server_state(request)
    model: ServedModel = state.model(body.model, ("generation", "translation", "summarization", "classification",
                                                  "embedding", "question-answering"), "/v1/attention")
    maps = await _run(request, state, state.workers[body.model].call(_maps, state, model, body))
    if body.format == "html":
        return HTMLResponse(AttentionView(maps).to_html())
    return {"object": "attention", "model": body.model, "title": maps.title, "heads": list(maps.heads),
            "layers": sorted({site.layer for site in maps.weights}), "view": view_data(maps)}


def _maps(state: ServerState, model: ServedModel, body: AttentionRequest) -> AttentionMaps:
    """Run in the model's worker thread: count the tokens, choose the layers, capture."""
    heads = model.n_heads
    limit = state.settings.max_attention_values

    def layers(length: int, cross: int = 0) -> list[int]:
        per_layer = heads * (length * length + cross)
        return choose_layers(model.n_layers, per_layer, limit, body.layers)

    if body.completion_id is not None:
        recent = state.recent.get(body.completion_id)
        if recent is None:
            raise APIError(404, f"completion {body.completion_id[:100]!r} is not known (the server keeps the last "
                           f"{state.settings.attention_cache} completions)", param="completion_id",
                           code="completion_not_found")
        if recent.model != body.model or not isinstance(model, Generator):
            raise APIError(400, f"completion {body.completion_id!r} was made by model {recent.model!r}",
                           param="model", code="invalid_value")
        if body.choice >= len(recent.outputs):
            raise APIError(422, f"choice: the completion has {len(recent.outputs)} choices", param="choice",
                           code="invalid_value")
        output = recent.outputs[body.choice]
        return model.attention(recent.prompt, output, layers(len(recent.prompt) + len(output)))
    assert body.input is not None
    if not body.input.strip():
        raise APIError(422, "input: the text is empty", param="input", code="invalid_value")
    if isinstance(model, Generator):
        prompt = model.encode(body.input)
        output = model.encode(body.output) if body.output else []
        return model.attention(prompt, output, layers(len(prompt) + len(output)))
    if isinstance(model, Translator):
        source = len(model.seq2seq.encode_sources([body.input])[0])
        target = model.seq2seq.max_target_length + 1  # BOS + the longest output
        return model.attention(body.input, body.output, layers(source, target * target + target * source), {})
    if body.output is not None:
        raise APIError(422, f"output: a {model.kind} model reads one text; give input only", param="output",
                       code="invalid_value")
    return model.attention(body.input, layers(len(model.input_ids(body.input))))  # type: ignore[attr-defined]
