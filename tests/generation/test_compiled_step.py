"""``GenerationConfig(compile=True)``: decoding steps through ``torch.compile`` over the static cache give the same
tokens as eager decoding, and do not recompile per step.

One test compiles with inductor, the default (what users get; a C++ compiler builds the kernels). The others count
graphs with a backend that runs the captured graph as it is, which is cheap and tests what the static cache is for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from multihead.errors import ConfigError
from multihead.generation import GenerationConfig, generate
from multihead.generation import compiled as compiled_module
from multihead.models import DecoderLM, EncoderDecoder, TransformerConfig

PROMPTS = [[6, 7, 8, 9, 10], [11, 12], [13, 6, 14]]
SOURCES = [[6, 7, 8, 9, 10, 5], [11, 12, 5], [13, 6, 14, 15, 5], [16, 5]]


def widen(model: nn.Module, *, seed: int, std: float) -> nn.Module:
    """Every parameter redrawn from normal(0, std): peaked outputs, far from ties."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model.eval()


def language_model(**changes: Any) -> DecoderLM:
    settings = {"vocab_size": 40, "d_model": 16, "n_heads": 4, "n_kv_heads": 2, "n_layers": 1, "d_ff": 32,
                "max_length": 64, "positions": "rope", "tie_embeddings": False, "dropout": 0.0, **changes}
    config = TransformerConfig(**settings)
    return widen(DecoderLM(config), seed=3, std=1.0)  # type: ignore[return-value]


@pytest.fixture
def graphs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Compile with a backend that counts the graphs it is given and runs them unchanged; fresh dynamo caches."""
    captured: list[int] = []
    original = torch.compile

    def counting(graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        captured.append(len(graph.graph.nodes))
        return graph.forward

    monkeypatch.setattr(torch, "compile", lambda function, **options: original(function, backend=counting))
    monkeypatch.setattr(compiled_module, "_COMPILED", None)
    torch._dynamo.reset()
    yield captured
    torch._dynamo.reset()


def tokens(results: list[list[Any]]) -> list[list[int]]:
    return [hypothesis.tokens for hypotheses in results for hypothesis in hypotheses]


def test_inductor_steps_give_the_eager_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled_module, "_COMPILED", None)
    torch._dynamo.reset()
    model = language_model()
    config = GenerationConfig(max_new_tokens=16)
    expected = tokens(generate(model, PROMPTS, config))
    assert tokens(generate(model, PROMPTS, config.replace(compile=True))) == expected
    assert len({token for row in expected for token in row}) > 3


def test_one_graph_serves_every_step_and_new_shapes_compile_a_bounded_number_of_times(graphs: list[int]) -> None:
    model = language_model()
    config = GenerationConfig(max_new_tokens=20)
    assert tokens(generate(model, PROMPTS, config.replace(compile=True))) == tokens(generate(model, PROMPTS, config))
    assert len(graphs) == 1  # 19 steps, one graph
    stopping = config.replace(eos_id=generate(model, PROMPTS, config)[1][0].tokens[3])  # rows stop early
    longer = [[*prompt, 7] for prompt in PROMPTS]
    for prompts in (PROMPTS, longer, longer):  # rows leave (down to one), then a wider cache
        expected = tokens(generate(model, prompts, stopping))
        assert tokens(generate(model, prompts, stopping.replace(compile=True))) == expected
    # torch.compile's automatic dynamic shapes: one more graph with the batch symbolic, one for a single row
    # (sizes 0 and 1 are specialised), then the same with the cache width symbolic; not one per step
    assert len(graphs) <= 5
    before = len(graphs)
    for prompts in (PROMPTS, longer, [[*prompt, 8, 9] for prompt in PROMPTS]):
        expected = tokens(generate(model, prompts, stopping))
        assert tokens(generate(model, prompts, stopping.replace(compile=True))) == expected
    assert len(graphs) == before  # the dynamic graphs serve every later call


def test_beam_search_of_an_encoder_decoder_gives_the_eager_n_best(graphs: list[int]) -> None:
    config = TransformerConfig(vocab_size=40, d_model=16, n_heads=2, n_layers=1, n_decoder_layers=2, d_ff=32,
                               max_length=64, dropout=0.0, tie_embeddings=False)
    model = widen(EncoderDecoder(config), seed=4, std=0.3)
    generation = GenerationConfig(max_new_tokens=12, num_beams=4, num_return_sequences=4, bos_id=4, eos_id=5,
                                  pad_id=0)
    expected = generate(model, SOURCES, generation)
    got = generate(model, SOURCES, generation.replace(compile=True))
    assert tokens(got) == tokens(expected)
    assert [h.score for hs in got for h in hs] == pytest.approx([h.score for hs in expected for h in hs], abs=1e-5)
    assert 1 <= len(graphs) <= 3


def test_settings_that_cannot_compile_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs use_cache=True"):
        GenerationConfig(compile=True, use_cache=False)
    with pytest.raises(ConfigError, match="cannot be combined"):
        GenerationConfig(compile=True, transposed_weights=True)
    with pytest.raises(ConfigError, match="ALiBi"):
        generate(language_model(positions="alibi"), PROMPTS, GenerationConfig(max_new_tokens=2, compile=True))
