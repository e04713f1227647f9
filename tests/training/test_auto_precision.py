"""``training.precision: auto``: bf16 on CUDA with bf16 or a CPU with AMX, fp32 elsewhere (AVX512-BF16 alone too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.training.toy import make_trainer

from multihead.training.precision import bf16_trains_faster, resolve_precision


def _cpu_has_bf16(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"),
                         [(False, False, "fp32"), (True, False, "fp32"), (False, True, "bf16"), (True, True, "bf16")])
def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, expected: str) -> None:
    _cpu_has_bf16(monkeypatch, avx512_bf16, amx)
    assert bf16_trains_faster(torch.device("cpu")) is (expected == "bf16")
    assert resolve_precision("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_explicit_precisions_are_kept(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    _cpu_has_bf16(monkeypatch, False, False)
    assert resolve_precision(precision, torch.device("cpu")) == precision


@pytest.mark.parametrize("native", [False, True])
def test_auto_trains_exactly_as_the_precision_it_picks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       native: bool) -> None:
    _cpu_has_bf16(monkeypatch, False, native)
    picked = "bf16" if native else "fp32"
    auto, auto_model = make_trainer(tmp_path / "auto", steps=12, precision="auto", device="cpu")
    fixed, fixed_model = make_trainer(tmp_path / "fixed", steps=12, precision=picked, device="cpu")
    auto.fit()
    fixed.fit()
    for (name, a), (_, b) in zip(auto_model.state_dict().items(), fixed_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    first = json.loads((tmp_path / "auto" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["precision"] == picked and first["device"] == "cpu"
