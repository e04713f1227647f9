"""The comparison report: ``report.md`` (tables, plots, the command and the machine), ``report.json`` (every
figure) and PNG plots (matplotlib, Agg), in the comparison's output folder."""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path
from typing import Any

import torch

from multihead.compare.config import CompareConfig
from multihead.compare.measure import Measured
from multihead.metrics import verdict

__all__ = ["machine_description", "write_report"]

_METRIC_NAMES = {"accuracy": "accuracy", "bleu": "BLEU", "perplexity": "perplexity"}


def machine_description(threads: int | None = None) -> str:
    """CPU model and core count, torch version and build, and the threads used."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    cores = os.cpu_count()
    used = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    return f"{cpu} ({cores} cores), torch {torch.__version__}, Python {platform.python_version()}{used}"


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _plot(path: Path, series: dict[str, dict[int, float]], *, ylabel: str, title: str, log_y: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for label, points in series.items():
        xs = sorted(points)
        axes.plot(xs, [points[x] for x in xs], marker="o", label=label)
    axes.set_xscale("log", base=2)
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel("sequence length (tokens)" if "distance" not in title else "distance k (tokens)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _budget(config: CompareConfig) -> str:
    training = next(iter(config.experiments.values())).training
    parts = [f"{training.steps:,} steps of {training.batch_size} examples"]
    if training.max_minutes is not None:
        parts.append(f"and at most {training.max_minutes:g} minutes of wall-clock time")
    parts.append(f"seed {training.seed}, validation every {training.eval_every} steps")
    if training.patience is not None:
        parts.append(f"early stop after {training.patience} evaluations without a better {training.metric}")
    return ", ".join(parts)


def _findings(quality: dict[str, dict[str, Any]], measured: Measured | None, metric: str, lengths: list[int]
              ) -> list[str]:
    """Plain statements computed from the figures: who wins on what, by how much."""
    lines = []
    higher_better = metric != "perplexity"
    split = "test" if all(metric in q.get("test", {}) for q in quality.values()) else "validation"
    scored = {label: q[split].get(metric) for label, q in quality.items() if q[split].get(metric) is not None}
    if scored:
        best = (max if higher_better else min)(scored, key=scored.__getitem__)
        lines.append(f"Best {split} {_METRIC_NAMES[metric]}: **{best}** ({_number(scored[best])}); "
                     + ", ".join(f"{label} {_number(value)}" for label, value in scored.items() if label != best) + ".")
    if measured is not None and len(measured.parameters) > 1:
        rates = measured.train_tokens_per_second
        fastest = max(rates, key=rates.__getitem__)
        lines.append(f"Fastest to train: **{fastest}** ({rates[fastest]:,.0f} tokens per CPU second); "
                     + ", ".join(f"{label} {rate:,.0f}" for label, rate in rates.items() if label != fastest) + ".")
        for length in (lengths[0], lengths[-1]):
            times = {label: measured.latency[label][length]["cpu_seconds"] for label in measured.latency}
            quickest = min(times, key=times.__getitem__)
            lines.append(f"At {length} tokens, inference is quickest for **{quickest}** ("
                         + ", ".join(f"{label} {seconds * 1e3:.1f} ms" for label, seconds in times.items()) + ").")
        longest = lengths[-1]
        memory = {label: measured.memory[label][longest] for label in measured.memory}
        leanest = min(memory, key=memory.__getitem__)
        lines.append(f"At {longest} tokens, peak activation memory is lowest for **{leanest}** ("
                     + ", ".join(f"{label} {value / 2**20:.1f} MiB" for label, value in memory.items()) + ").")
    return lines


def _test_figure(test: dict[str, Any], metric: str) -> str:
    """The test figure, with its 95% interval where the report has one (accuracy)."""
    interval = test.get("accuracy_interval") if metric == "accuracy" else None
    text = _number(test.get(metric))
    return f"{text} ({interval[0]:.3f}-{interval[1]:.3f})" if interval else text


def _significance_lines(significance: dict[str, dict[str, float]]) -> list[str]:
    """One sentence per pair of classifiers: who won the examples they disagree on, and the McNemar p-value."""
    lines = []
    for pair, test in significance.items():
        first, second = pair.split(" vs ")
        lines.append(f"{first} vs {second} on test: {test['first_only']} sentences only {first} got right, "
                     f"{test['second_only']} only {second}; exact McNemar p = {test['p_value']:.3f}, "
                     f"{verdict(test['p_value'])}.")
    return lines


def write_report(config: CompareConfig, *, quality: dict[str, dict[str, Any]], measured: Measured | None,
                 seconds: float, significance: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and the plots; return the JSON report."""
    output_dir = Path(config.output_dir)
    metric = next(iter(quality.values()))["metric"]
    threads = config.measure.threads if config.measure else torch.get_num_threads()  # what training used
    command = " ".join(["multihead compare", config.source, *(f"--set {o}" for o in config.overrides)])
    report: dict[str, Any] = {
        "title": config.title, "task": config.task, "command": command,
        "machine": machine_description(threads), "date": datetime.date.today().isoformat(),
        "budget": _budget(config), "seconds": seconds, "quality": quality,
        "architectures": {label: e.model for label, e in config.experiments.items()},
    }
    lines = [f"# {config.title}", "",
             f"Command: `{command}` ({seconds / 60:.1f} minutes in all). Machine: {report['machine']}. "
             f"Date: {report['date']}.", "",
             f"Budget, the same for every architecture: {report['budget']}. A step budget keeps the quality "
             "figures independent of the machine's load; the model kept is the one best on validation.", ""]
    test_header = f"test {_METRIC_NAMES[metric]}" + (" (95% interval)" if metric == "accuracy" else "")
    header = ["architecture", "parameters", f"validation {_METRIC_NAMES[metric]}", test_header,
              "best step", "training time"]
    rows = [[label, _number(q.get("parameters")), _number(q["validation"].get(metric, q["validation"].get(
        "accuracy"))), _test_figure(q.get("test", {}), metric), _number(q.get("best_step")),
        f"{q['seconds']:.0f} s"] for label, q in quality.items()]
    if metric == "bleu":
        header.insert(4, "test chrF")
        for row, q in zip(rows, quality.values(), strict=True):
            row.insert(4, _number(q.get("test", {}).get("chrf"), 1))
    lines += ["## Quality", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Training time is wall-clock time on a shared machine: it includes evaluation and other "
              "processes' load, so it is not a speed figure" + ("; the speed figures are below." if measured
                                                                 else "."), ""]
    if config.probe is not None:
        distances = list(config.probe.spec.distances)
        series = {label: {int(k): a for k, a in q["accuracy_by_distance"].items()} for label, q in quality.items()}
        _plot(output_dir / "probe_accuracy.png", series, ylabel="test accuracy",
              title="key-value recall: accuracy against distance k", log_y=False)
        lines += ["## Accuracy against distance", "", "| architecture | " + " | ".join(f"k = {k}" for k in distances)
                  + " |", "|" + " --- |" * (len(distances) + 1)]
        lines += [f"| {label} | " + " | ".join(_number(series[label][k]) for k in distances) + " |"
                  for label in series]
        lines += ["", f"Chance is {1 / config.probe.spec.n_values:.3f} ({config.probe.spec.n_values} values).", "",
                  "![accuracy against distance](probe_accuracy.png)", ""]
    if measured is not None:
        settings = config.measure
        assert settings is not None
        lengths = list(settings.lengths)
        report["measured"] = {
            "parameters": measured.parameters,
            "latency": {label: {str(k): v for k, v in values.items()} for label, values in measured.latency.items()},
            "peak_memory_bytes": {label: {str(k): v for k, v in values.items()}
                                  for label, values in measured.memory.items()},
            "train_tokens_per_cpu_second": measured.train_tokens_per_second,
            "train_tokens_per_wall_second": measured.train_wall_tokens_per_second,
            "settings": {"lengths": lengths, "batch_size": settings.batch_size, "rounds": settings.rounds,
                         "train_length": settings.train_length, "threads": settings.threads}}
        _plot(output_dir / "latency.png", {label: {k: v["cpu_seconds"] * 1e3 for k, v in values.items()}
                                           for label, values in measured.latency.items()},
              ylabel="milliseconds per batch (CPU time)", title=f"inference latency, batch {settings.batch_size}",
              log_y=True)
        _plot(output_dir / "memory.png", {label: {k: v / 2**20 for k, v in values.items()}
                                          for label, values in measured.memory.items()},
              ylabel="peak activation memory (MiB)", title=f"inference memory, batch {settings.batch_size}",
              log_y=True)
        train_batch = next(iter(config.experiments.values())).training.batch_size
        lines += ["## Speed and memory", "",
                  f"Fresh models of each architecture and size, random token ids, {settings.threads} "
                  f"thread{'s' if settings.threads != 1 else ''}. "
                  f"Times are medians of {settings.rounds} interleaved rounds (each architecture in turn, so all "
                  "meet the same load) of the process's CPU time, which other processes disturb far less than "
                  "the wall clock. Training throughput: forward, loss, backward and an AdamW step on a batch of "
                  f"{train_batch} x {settings.train_length} tokens"
                  + (" (source and target each)" if config.model_inputs == "translation" else "") + ". Inference: one "
                  f"forward pass over a batch of {settings.batch_size} sequences of each length"
                  + (", source and target both that long (teacher forcing, no decoding)"
                     if config.model_inputs == "translation" else "") + ". Memory: the peak of the bytes torch's CPU "
                  "allocator holds during that pass beyond what it held before (activations and workspaces; "
                  "weights excluded), from torch.profiler's allocation records.", "",
                  "| architecture | parameters | training tokens/s | " + " | ".join(
                      f"ms @ {n}" for n in lengths) + f" | MiB @ {lengths[-1]} |",
                  "|" + " --- |" * (len(lengths) + 4)]
        for label in measured.parameters:
            lines.append(f"| {label} | {measured.parameters[label]:,} | "
                         f"{measured.train_tokens_per_second[label]:,.0f} | " + " | ".join(
                             f"{measured.latency[label][n]['cpu_seconds'] * 1e3:.1f}" for n in lengths)
                         + f" | {measured.memory[label][lengths[-1]] / 2**20:.1f} |")
        lines += ["", "![inference latency against length](latency.png) ![memory against length](memory.png)", "",
                  "Peak activation memory (MiB) at each length:", "",
                  "| architecture | " + " | ".join(str(n) for n in lengths) + " |",
                  "|" + " --- |" * (len(lengths) + 1)]
        lines += [f"| {label} | " + " | ".join(f"{values[n] / 2**20:.2f}" for n in lengths) + " |"
                  for label, values in measured.memory.items()]
        lines.append("")
    findings = _findings(quality, measured, metric, list(config.measure.lengths) if config.measure else [])
    if significance:
        report["significance"] = significance
        findings += _significance_lines(significance)
    if findings:
        lines += ["## What the figures say", "", *(f"- {line}" for line in findings), ""]
    (output_dir / "report.md").write_text("\n".join(lines))
    (output_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
