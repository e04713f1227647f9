"""OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``/v1/completions`` and
``/v1/embeddings``, answers and stream chunks in OpenAI's shapes."""

from __future__ import annotations

import asyncio
import base64
import secrets
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request

from multihead.serve.completions import Generation
from multihead.serve.errors import APIError, error_body
from multihead.serve.served import Embedder, Generator
from multihead.serve.sse import DONE, ClientGoneError, EventStream, event, unless_disconnected
from multihead.serve.state import ServerState

__all__ = ["router"]

router = APIRouter()
_STARTED = int(time.time())


def server_state(request: Request) -> ServerState:
    return request.app.state.server


def _gone(state: ServerState, route: str) -> Callable[[], None]:
    return lambda: state.metrics.disconnects.labels(route).inc()


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model served, by name, with its kind."""
    models = server_state(request).models
    return {"object": "list", "data": [_model_card(name, model.kind) for name, model in models.items()]}


@router.get("/v1/models/{name:path}")
async def get_model(name: str, request: Request) -> dict[str, Any]:
    model = server_state(request).models.get(name)
    if model is None:
        raise APIError(404, f"model {name[:100]!r} is not served here", param="model", code="model_not_found")
    return _model_card(name, model.kind)


def _model_card(name: str, kind: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _STARTED, "owned_by": "multihead", "kind": kind}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Any:
    from multihead.serve.schemas import ChatCompletionRequest

    body = ChatCompletionRequest.model_validate(await read_json(request))
    state = server_state(request)
    model: Generator = state.model(body.model, ("generation",), "/v1/chat/completions")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text} for m in body.messages]
    prompt = await asyncio.to_thread(lambda: model.encode(model.render(messages)))
    generation = Generation(model, state.schedulers[body.model], state.settings, state.metrics, [prompt], body)
    generation.start()
    identity, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
    head = {"id": identity, "object": "chat.completion.chunk", "created": created, "model": body.model}

    def chunk(index: int, delta: dict[str, str], reason: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        return {**head, "choices": [choice], **({"usage": None} if body.include_usage else {})}

    if body.stream:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(len(generation.handles)):
                yield event(chunk(index, {"role": "assistant", "content": ""}, None))
            async for item in _events(generation, state, identity, body.model):
                if isinstance(item, bytes):
                    yield item
                    continue
                index, piece, reason = item
                yield event(chunk(index, {"content": piece} if piece else {}, reason))
            if body.include_usage:
                yield event({**head, "choices": [], "usage": generation.usage})
            yield DONE

        return EventStream(chunks(), on_disconnect=_gone(state, "/v1/chat/completions"))
    texts, reasons = await _collect(request, generation, state, identity, body.model)
    choices = [{"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": reason} for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))]
    return {"id": identity, "object": "chat.completion", "created": created, "model": body.model,
            "choices": choices, "usage": generation.usage}


@router.post("/v1/completions", response_model=None)
async def completions(request: Request) -> Any:
    from multihead.serve.schemas import CompletionRequest

    body = CompletionRequest.model_validate(await read_json(request))
    state = server_state(request)
    model: Generator = state.model(body.model, ("generation",), "/v1/completions")
    if len(body.prompts) > state.settings.max_inputs:
        raise APIError(422, f"prompt: at most {state.settings.max_inputs} prompts per request, got "
                       f"{len(body.prompts)}", param="prompt", code="limit_exceeded")
    prompts = await asyncio.to_thread(lambda: [model.encode(text) for text in body.prompts])
    generation = Generation(model, state.schedulers[body.model], state.settings, state.metrics, prompts, body,
                            param="prompt")
    generation.start()
    identity, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
    head = {"id": identity, "object": "text_completion", "created": created, "model": body.model}
    if body.stream:
        async def chunks() -> AsyncIterator[bytes]:
            async for item in _events(generation, state, identity, body.model):
                if isinstance(item, bytes):
                    yield item
                    continue
                index, piece, reason = item
                choice = {"index": index, "text": piece, "logprobs": None, "finish_reason": reason}
                yield event({**head, "choices": [choice], **({"usage": None} if body.include_usage else {})})
            if body.include_usage:
                yield event({**head, "choices": [], "usage": generation.usage})
            yield DONE

        return EventStream(chunks(), on_disconnect=_gone(state, "/v1/completions"))
    texts, reasons = await _collect(request, generation, state, identity, body.model)
    choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": reason}
               for i, (text, reason) in enumerate(zip(texts, reasons, strict=True))]
    return {**head, "choices": choices, "usage": generation.usage}


async def read_json(request: Request) -> Any:
    """The body as JSON (400 naming the position when it is not JSON)."""
    import json

    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise APIError(400, f"the request body is not valid JSON ({str(error)[:120]})", code="json_invalid") from error


async def _events(generation: Generation, state: ServerState, identity: str, name: str
                  ) -> AsyncIterator[tuple[int, str, str | None] | bytes]:
    """The generation's events; an error mid-stream becomes an error event (the stream then ends)."""
    try:
        async for item in generation.events():
            yield item
    except APIError as error:
        yield event(error_body(error.status, error.message, code=error.code))
        return
    except Exception as error:  # a failed forward, a closed scheduler
        yield event(error_body(503, f"generation failed: {str(error)[:200]}", code="generation_failed"))
        return
    state.remember(identity, name, generation.prompts[0], generation.output_tokens())


async def _collect(request: Request, generation: Generation, state: ServerState, identity: str, name: str
                   ) -> tuple[list[str], list[str | None]]:
    """Every choice's whole text and finish reason (the request is cancelled if the client goes away)."""
    texts = [""] * len(generation.handles)
    reasons: list[str | None] = [None] * len(generation.handles)

    async def run() -> None:
        async for index, piece, reason in generation.events():
            texts[index] += piece
            if reason is not None:
                reasons[index] = reason

    try:
        await unless_disconnected(request, run())
    except ClientGoneError as error:
        state.metrics.disconnects.labels(request.url.path).inc()
        raise APIError(499, "the client closed the connection", code="client_closed") from error
    except APIError:
        raise
    except Exception as error:
        raise APIError(503, f"generation failed: {str(error)[:200]}", code="generation_failed") from error
    state.remember(identity, name, generation.prompts[0], generation.output_tokens())
    return texts, reasons


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    from multihead.serve.schemas import EmbeddingRequest

    body = EmbeddingRequest.model_validate(await read_json(request))
    state = server_state(request)
    model: Embedder = state.model(body.model, ("embedding",), "/v1/embeddings")
    texts = body.texts
    check_texts(texts, state.settings.max_inputs)
    if body.dimensions is not None and body.dimensions != model.encoder.dimension:
        raise APIError(422, f"dimensions: this model's embeddings have {model.encoder.dimension} dimensions, got "
                       f"{body.dimensions}", param="dimensions", code="invalid_value")

    def run(items: list[str]) -> list[tuple[list[float], int]]:
        return list(zip(model.run(items), [model.count_tokens([item]) for item in items], strict=True))

    try:
        results = await unless_disconnected(request, state.workers[body.model].batched("embed", run, texts))
    except ClientGoneError as error:
        raise APIError(499, "the client closed the connection", code="client_closed") from error
    tokens = sum(count for _, count in results)
    state.metrics.tokens.labels(body.model, "prompt").inc(tokens)
    data = [{"object": "embedding", "index": i, "embedding": _encode_vector(vector, body.encoding_format)}
            for i, (vector, _) in enumerate(results)]
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def check_texts(texts: list[str], limit: int, param: str = "input") -> None:
    """At least one and at most ``limit`` texts, none empty (422 naming the field)."""
    if not texts:
        raise APIError(422, f"{param}: give at least one text", param=param, code="invalid_value")
    if len(texts) > limit:
        raise APIError(422, f"{param}: at most {limit} texts per request, got {len(texts)}", param=param,
                       code="limit_exceeded")
    for index, text in enumerate(texts):
        if not text.strip():
            where = param if len(texts) == 1 else f"{param}.{index}"
            raise APIError(422, f"{where}: the text is empty", param=where, code="invalid_value")


def _encode_vector(vector: list[float], encoding: str) -> list[float] | str:
    """A vector as floats or, as OpenAI's clients ask by default, base64 of little-endian float32."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
