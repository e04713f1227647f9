"""``GenerationConfig`` validates every field and names it in the error; ``generate`` checks its arguments."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_models import tiny_lm, tiny_seq2seq

from multihead.generation import GenerationConfig, generate

BAD_VALUES = [
    ("max_new_tokens", 0), ("max_new_tokens", 2.5), ("max_new_tokens", True),
    ("num_beams", 0), ("num_return_sequences", 0),
    ("do_sample", 1), ("early_stopping", "yes"), ("use_cache", None),
    ("temperature", 0.0), ("temperature", -1.0), ("temperature", float("nan")),
    ("top_k", 0), ("top_k", 1.5),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", "0.9"),
    ("repetition_penalty", 0.0), ("repetition_penalty", float("inf")),
    ("length_penalty", float("nan")), ("length_penalty", "1"),
    ("seed", -1), ("eos_id", -2), ("bos_id", 1.0), ("pad_id", -1),
    ("stop_token_ids", 3), ("stop_token_ids", (1, -1)), ("stop_token_ids", ("a",)),
    ("stop_strings", "stop"), ("stop_strings", ("",)), ("stop_strings", (3,)),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_bad_value_names_the_field_and_the_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"GenerationConfig\.{field}\b") as error:
        GenerationConfig(**{field: value})  # type: ignore[arg-type]
    assert repr(value)[:20] in str(error.value) or field == "stop_token_ids" or field == "stop_strings"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"num_beams": 4, "do_sample": True}, "num_beams"),
        ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
        ({"num_return_sequences": 2}, "num_return_sequences"),
    ],
)
def test_inconsistent_fields_are_rejected(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"GenerationConfig\.{field}"):
        GenerationConfig(**options)  # type: ignore[arg-type]


def test_defaults_are_valid_frozen_and_lists_become_tuples() -> None:
    config = GenerationConfig(stop_token_ids=[5, 6], stop_strings=["\n"], eos_id=2)  # type: ignore[arg-type]
    assert config.stop_token_ids == (5, 6) and config.stop_strings == ("\n",)
    assert config.stop_ids == frozenset({2, 5, 6})
    assert GenerationConfig().stop_ids == frozenset()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_beams = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        GenerationConfig(4)  # type: ignore[misc]  # keyword-only
    assert config.replace(num_beams=3).num_beams == 3
    with pytest.raises(ValueError, match=r"GenerationConfig\.num_beams"):
        config.replace(num_beams=0)


def test_generate_checks_its_arguments() -> None:
    lm, seq2seq = tiny_lm(), tiny_seq2seq()
    config = GenerationConfig(max_new_tokens=2)
    with pytest.raises(ValueError, match="bos_id"):
        generate(seq2seq, [[3, 4]], config)
    with pytest.raises(ValueError, match="eos_id 99"):
        generate(lm, [[3]], config.replace(eos_id=99))
    with pytest.raises(ValueError, match=r"inputs\[1\] is empty"):
        generate(lm, [[3], []], config)
    assert generate(lm, [[]], config.replace(bos_id=1))[0][0].tokens  # an empty prompt starts from BOS
    with pytest.raises(ValueError, match=r"inputs\[0\] has token id 40"):
        generate(lm, [[40]], config)
    with pytest.raises(ValueError, match=r"inputs\[0\] is a single token id 3"):
        generate(lm, [3, 4], config)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="decode"):
        generate(lm, [[3]], config.replace(stop_strings=("x",)))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        generate(lm, [[3]], config, batch_size=0)
    with pytest.raises(ValueError, match="DecoderLM or an EncoderDecoder, got Linear"):
        generate(torch.nn.Linear(2, 2), [[3]], config)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="learned positions"):
        generate(tiny_lm(positions="learned"), [[3] * 10], config.replace(max_new_tokens=60))


def test_generate_leaves_the_training_flag_as_it_was() -> None:
    lm = tiny_lm(dropout=0.5).train()
    first = generate(lm, [[3, 4]], GenerationConfig(max_new_tokens=6))[0][0].tokens
    again = generate(lm, [[3, 4]], GenerationConfig(max_new_tokens=6))[0][0].tokens
    assert lm.training and first == again  # dropout is off while decoding
