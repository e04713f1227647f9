"""``run_server``: serve an app with uvicorn until SIGTERM or Ctrl-C, then drain: stop accepting connections,
let the requests in flight finish within ``drain_timeout`` seconds (``/health`` answers 503 ``draining``
meanwhile), cancel what is left, stop the schedulers and return 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from multihead.errors import ConfigError

__all__ = ["check_bind", "is_loopback", "run_server"]

log = logging.getLogger("multihead.serve")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, api_key: str | None, insecure: bool) -> None:
    """Refuse to listen beyond loopback without an API key, unless ``insecure`` says so."""
    if not is_loopback(host) and api_key is None and not insecure:
        raise ConfigError(f"refusing to listen on {host} without an API key: anyone who reaches it could use the "
                          "models; pass --api-key KEY (or set MULTIHEAD_API_KEY), or --insecure to accept that")


class _DrainingServer(uvicorn.Server):
    """uvicorn's server that marks the app draining on the first signal and exits normally after the drain."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, on_ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.app = app
        self.on_ready = on_ready

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            log.info("signal %s: draining the requests in flight (at most %s s)", signal.Signals(sig).name,
                     self.config.timeout_graceful_shutdown)
        self.app.state.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_server(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, drain_timeout: float = 30.0,
               on_ready: Callable[[str], None] | None = None) -> int:
    """Serve ``app`` on ``host:port`` until a signal, then drain; returns 0.

    Args:
        drain_timeout: seconds the requests in flight get to finish after SIGTERM or Ctrl-C.
        on_ready: called with the server's URL once it accepts connections (port 0: the port chosen).
    """
    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=drain_timeout, log_config=None,
                            access_log=False, lifespan="on", timeout_keep_alive=5)
    sock = config.bind_socket()
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}"
    server = _DrainingServer(config, app, (lambda: on_ready(url)) if on_ready is not None else None)
    server.run(sockets=[sock])
    return 0
