"""``training.compile``: the training step through ``torch.compile`` learns exactly what the eager step learns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from toy import make_trainer

from multihead.errors import ConfigError
from multihead.training import TrainingConfig


def test_compiled_training_gives_the_eager_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eager, eager_model = make_trainer(tmp_path / "eager", steps=6, eval_every=6, dropout=0.0)
    eager.fit()
    graphs: list[int] = []
    original = torch.compile

    def counting(graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        graphs.append(len(graph.graph.nodes))
        return graph.forward

    # a backend that runs the captured graph as it is: the test checks what the trainer compiles and that the
    # result is the same, cheaply (inductor's kernels are timed in benchmarks/compile_speed.py)
    monkeypatch.setattr(torch, "compile", lambda module, **options: original(module, backend=counting))
    torch._dynamo.reset()
    try:
        compiled, compiled_model = make_trainer(tmp_path / "compiled", steps=6, eval_every=6, dropout=0.0,
                                                compile=True)
        result = compiled.fit()
    finally:
        torch._dynamo.reset()
    assert graphs and result.step == 6  # the model's forward went through torch.compile
    expected, got = eager_model.state_dict(), compiled_model.state_dict()
    assert expected.keys() == got.keys()  # the raw model is saved: no "_orig_mod." prefix
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)
    assert (tmp_path / "compiled" / "best" / "model.safetensors").is_file()


def test_compile_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match=r"training\.compile must be true or false"):
        TrainingConfig(compile="yes")  # type: ignore[arg-type]
