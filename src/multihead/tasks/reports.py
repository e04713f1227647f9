"""Reports as text: the lines ``multihead train`` and ``multihead eval`` print for each kind of report."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["classification_lines", "json_lines", "scores_then_outputs"]


def classification_lines(report: dict[str, Any]) -> list[str]:
    """Accuracy with its 95% interval, macro-F1, per-class scores and the confusion matrix."""
    interval = report.get("accuracy_interval")
    sure = f" (95% interval {interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
    lines = [f"accuracy {report['accuracy']:.4f}{sure}   macro-F1 {report['macro_f1']:.4f}   "
             f"examples {report['examples']:,}", "per class:"]
    names = report["labels"]
    width = max(len(name) for name in names) + 2
    lines += [f"  {name:<{width}} precision {s['precision']:.3f}  recall {s['recall']:.3f}  F1 {s['f1']:.3f}  "
              f"support {s['support']}" for name, s in report["per_class"].items()]
    lines.append("confusion matrix (rows = true, columns = predicted):")
    lines.append(" " * (width + 2) + "".join(f"{name[:8]:>9}" for name in names))
    lines += [f"  {name:<{width}}" + "".join(f"{count:>9}" for count in row)
              for name, row in zip(names, report["confusion_matrix"], strict=True)]
    return lines


def json_lines(report: dict[str, Any]) -> list[str]:
    """The report as indented JSON."""
    return json.dumps(report, indent=2).splitlines()


def scores_then_outputs(report: dict[str, Any], *, show: int = 3) -> list[str]:
    """Scores as JSON, then the first ``show`` generated texts (a generation report's ``hypotheses``)."""
    scores = {key: value for key, value in report.items() if key != "hypotheses"}
    return json_lines(scores) + ["  " + text for text in (report.get("hypotheses") or [])[:show]]
