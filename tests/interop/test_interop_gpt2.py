"""GPT-2 parity: a tiny random ``GPT2LMHeadModel`` loaded into our ``DecoderLM`` gives the same logits,
greedy outputs and beam-search n-best lists as ``transformers``' ``generate``; ours saved back agree too.

Beam search is compared like with like: ``early_stopping=True`` on both sides (a sentence is done once it
holds ``num_beams`` finished hypotheses), and both score a hypothesis ``sum log p / length ** penalty``
with ``length`` counting the generated tokens and the eos. Our ``early_stopping=False`` keeps searching
until no live beam can beat the worst finished one, bounding its score at the longest reachable length
for a positive penalty: ``transformers`` calls that ``early_stopping="never"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_tiny import frequent_token, gpt2, hf_model, left_padded, ours, until_eos

from multihead.generation import GenerationConfig, generate
from multihead.interop import load_hf, save_hf
from multihead.models import DecoderLM

ATOL = 1e-5
PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23, 24]]  # mixed lengths: left padding
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[DecoderLM, object]:
    directory = gpt2(tmp_path_factory.mktemp("gpt2"))
    model = load_hf(directory).model
    assert isinstance(model, DecoderLM)
    return model, hf_model("GPT2LMHeadModel", directory)


def test_logits_equal_gpt2(models: tuple[DecoderLM, object]) -> None:
    model, theirs = models
    ids = torch.randint(1, 97, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = theirs(ids, output_hidden_states=True)  # type: ignore[operator]
        torch.testing.assert_close(model(ids), output.logits, atol=ATOL, rtol=0)
        torch.testing.assert_close(model.decoder(ids), output.hidden_states[-1], atol=ATOL, rtol=0)


def hf_generate(theirs: object, **options: object) -> torch.Tensor:
    ids, mask = left_padded(PROMPTS, pad_id=0)
    with torch.no_grad():
        out = theirs.generate(input_ids=ids, attention_mask=mask, do_sample=False,  # type: ignore[attr-defined]
                              max_new_tokens=NEW_TOKENS, pad_token_id=0, **options)
    return out[:, ids.shape[1]:]  # generated tokens only


def test_greedy_outputs_equal_generate(models: tuple[DecoderLM, object]) -> None:
    model, theirs = models
    for eos in (96, frequent_token(hf_generate(theirs, eos_token_id=96).tolist())):
        expected = until_eos(hf_generate(theirs, eos_token_id=eos), eos)
        config = GenerationConfig(max_new_tokens=NEW_TOKENS, eos_id=eos, pad_id=0)
        assert ours(generate(model, PROMPTS, config)) == expected
    assert any(row[-1] == eos and len(row) < NEW_TOKENS for row in expected)  # eos ended some output early


@pytest.mark.parametrize("length_penalty", [1.0, 0.6, 2.0, -1.0])
@pytest.mark.parametrize(("early_stopping", "theirs_early_stopping"), [(True, True), (False, "never")])
def test_beam_n_best_lists_equal_generate(
    models: tuple[DecoderLM, object], length_penalty: float, early_stopping: bool, theirs_early_stopping: object
) -> None:
    model, theirs = models
    eos = frequent_token(hf_generate(theirs, eos_token_id=96).tolist())  # so that beams end at different lengths
    expected = until_eos(hf_generate(theirs, eos_token_id=eos, num_beams=4, num_return_sequences=4,
                                     length_penalty=length_penalty, early_stopping=theirs_early_stopping), eos)
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, eos_id=eos, pad_id=0, num_beams=4, num_return_sequences=4,
                              length_penalty=length_penalty, early_stopping=early_stopping)
    assert ours(generate(model, PROMPTS, config)) == expected
    assert any(row[-1] == eos for row in expected)  # eos ended hypotheses: the length penalty matters


@pytest.mark.parametrize("tie", [True, False])
def test_saved_model_loads_in_transformers_and_agrees(tmp_path: Path, tie: bool) -> None:
    loaded = load_hf(gpt2(tmp_path / "hf", tie_word_embeddings=tie))
    assert loaded.model.config.tie_embeddings is tie
    save_hf(loaded.model, tmp_path / "out", hf_config=loaded.hf_config)
    back = hf_model("GPT2LMHeadModel", tmp_path / "out")
    assert back.config.eos_token_id == 96
    ids = torch.randint(1, 97, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, loaded.model(ids), atol=ATOL, rtol=0)


def test_attention_scaling_we_lack_is_an_error(tmp_path: Path) -> None:
    directory = gpt2(tmp_path)
    values = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**values, "scale_attn_by_inverse_layer_idx": True}))
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx=false"):
        load_hf(directory)
