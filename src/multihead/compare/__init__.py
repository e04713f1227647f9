"""``multihead compare``: train architectures on the same data and budget, measure them, write a report; and
the long-range probe (key-value recall at distance ``k``)."""

from multihead.compare.config import CompareConfig, MeasureConfig, ProbeSettings, build_compare, load_compare
from multihead.compare.probe import ProbeExample, ProbeSpec, generate_probe
from multihead.compare.runner import run_compare

__all__ = [
    "CompareConfig",
    "MeasureConfig",
    "ProbeExample",
    "ProbeSettings",
    "ProbeSpec",
    "build_compare",
    "generate_probe",
    "load_compare",
    "run_compare",
]
