"""``ServerMetrics``: the Prometheus series of one server (its own registry, so that apps never share counters).

Requests and latencies by route and status; prompt and generated tokens by model; time to first token and
between tokens; micro-batch sizes; and, read from each scheduler at scrape time, queue depth, running
sequences, decoding steps and tokens decoded (their ratio is the mean continuous-batch size).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_TOKEN_GAP = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)


class _SchedulerCollector(Collector):
    """Reads every scheduler's and worker's state when Prometheus scrapes."""

    def __init__(self, sources: Callable[[], Mapping[str, Any]], workers: Callable[[], Mapping[str, int]]) -> None:
        self.sources = sources
        self.workers = workers

    def collect(self) -> Iterator[Any]:
        queued = GaugeMetricFamily("multihead_queue_depth", "Requests waiting for a decoding slot or a worker",
                                   labels=["model"])
        running = GaugeMetricFamily("multihead_running_sequences", "Sequences decoding now (continuous batch size)",
                                    labels=["model"])
        slots = GaugeMetricFamily("multihead_decoding_slots", "Sequences a generation model decodes at once",
                                  labels=["model"])
        steps = CounterMetricFamily("multihead_decode_steps", "Batched decoding steps run", labels=["model"])
        decoded = CounterMetricFamily("multihead_decoded_tokens", "Tokens chosen by decoding steps and prefills",
                                      labels=["model"])
        for name, stats in self.sources().items():
            queued.add_metric([name], stats.queued)
            running.add_metric([name], stats.running)
            slots.add_metric([name], stats.slots)
            steps.add_metric([name], stats.steps)
            decoded.add_metric([name], stats.generated)
        for name, pending in self.workers().items():
            queued.add_metric([name], pending)
        yield from (queued, running, slots, steps, decoded)


class ServerMetrics:
    """The series one app exposes at ``/metrics``."""

    def __init__(self, schedulers: Callable[[], Mapping[str, Any]] = dict,
                 workers: Callable[[], Mapping[str, int]] = dict) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("multihead_requests", "HTTP requests answered", ["route", "status"],
                                registry=registry)
        self.latency = Histogram("multihead_request_seconds", "Time from request to the end of the answer",
                                 ["route"], buckets=_LATENCY, registry=registry)
        self.in_flight = Gauge("multihead_requests_in_flight", "Requests being answered", registry=registry)
        self.tokens = Counter("multihead_tokens", "Prompt and generated tokens", ["model", "kind"], registry=registry)
        self.first_token = Histogram("multihead_time_to_first_token_seconds", "Time from request to first token",
                                     ["model"], buckets=_LATENCY, registry=registry)
        self.token_gap = Histogram("multihead_inter_token_seconds", "Time between two tokens of one stream",
                                   ["model"], buckets=_TOKEN_GAP, registry=registry)
        self.batch_size = Histogram("multihead_batch_size", "Texts per micro-batch (classification, embeddings)",
                                    ["model"], buckets=_BATCH, registry=registry)
        self.rejected = Counter("multihead_rejected", "Requests refused before running", ["reason"],
                                registry=registry)
        self.disconnects = Counter("multihead_client_disconnects", "Requests whose client went away before the end",
                                   ["route"], registry=registry)
        registry.register(_SchedulerCollector(schedulers, workers))

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
