"""Marian parity: a tiny random ``MarianMTModel`` loaded into our ``EncoderDecoder`` gives the same logits,
greedy translations and beam-search n-best lists as ``transformers``; ours saved back agree too.

Beam search compares like with like, as in the GPT-2 tests: ``early_stopping=True`` on both sides, the
same ``sum log p / length ** penalty`` score. ``forced_eos_token_id`` is off in the tiny configs: our
``GenerationConfig`` has no forced eos at the length limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_tiny import MARIAN_PAD, frequent_token, hf_model, marian, ours, right_padded, until_eos

from multihead.generation import GenerationConfig, generate
from multihead.interop import load_hf, save_hf
from multihead.models import EncoderDecoder, TransformerConfig
from multihead.positions import SinusoidalPositions

ATOL = 1e-5
SOURCES = [[5, 17, 33, 8, 41, 2, 9, 71, 12], [44, 3, 19, 27, 50, 6], [13, 88, 4, 21]]
NEW_TOKENS = 10
# Untied output layer and separate vocabularies: tiny random tied models repeat their input token.
VARIED = {"share_encoder_decoder_embeddings": False, "decoder_vocab_size": 77, "tie_word_embeddings": False}


def targets() -> torch.Tensor:
    ids = torch.randint(1, 70, (3, 7), generator=torch.Generator().manual_seed(2))
    ids[:, 0] = MARIAN_PAD  # the decoder start token
    return ids


@pytest.mark.parametrize("overrides", [{}, VARIED, {"tie_word_embeddings": False}], ids=["tied", "separate", "untied"])
def test_logits_equal_marian(tmp_path: Path, overrides: dict[str, object]) -> None:
    directory = marian(tmp_path, **overrides)
    model = load_hf(directory).model
    assert isinstance(model, EncoderDecoder)
    source, mask = right_padded(SOURCES, MARIAN_PAD)
    with torch.no_grad():
        expected = hf_model("MarianMTModel", directory)(input_ids=source, attention_mask=mask,
                                                         decoder_input_ids=targets()).logits
        torch.testing.assert_close(model(source, targets()), expected, atol=ATOL, rtol=0)


def test_positions_are_marians_sine_then_cosine_table(tmp_path: Path) -> None:
    theirs = hf_model("MarianMTModel", marian(tmp_path)).model.encoder.embed_positions
    table = SinusoidalPositions(32, layout="halves")(torch.arange(64))
    torch.testing.assert_close(table, theirs.create_weight(), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> tuple[EncoderDecoder, object]:
    directory = marian(tmp_path_factory.mktemp("marian"), **VARIED)
    model = load_hf(directory).model
    assert isinstance(model, EncoderDecoder)
    return model, hf_model("MarianMTModel", directory)


def hf_generate(theirs: object, **options: object) -> torch.Tensor:
    source, mask = right_padded(SOURCES, MARIAN_PAD)
    with torch.no_grad():
        out = theirs.generate(input_ids=source, attention_mask=mask, do_sample=False,  # type: ignore[attr-defined]
                              max_new_tokens=NEW_TOKENS, **options)
    return out[:, 1:]  # without the decoder start token


def config(**options: object) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=NEW_TOKENS, bos_id=MARIAN_PAD, pad_id=MARIAN_PAD, **options)  # type: ignore[arg-type]


def test_greedy_translations_equal_generate(varied: tuple[EncoderDecoder, object]) -> None:
    model, theirs = varied
    eos = frequent_token(hf_generate(theirs, eos_token_id=0).tolist())
    expected = until_eos(hf_generate(theirs, eos_token_id=eos), eos)
    assert ours(generate(model, SOURCES, config(eos_id=eos))) == expected
    assert any(row[-1] == eos for row in expected)


@pytest.mark.parametrize("length_penalty", [1.0, 0.6, 2.0])
def test_beam_n_best_lists_equal_generate(varied: tuple[EncoderDecoder, object], length_penalty: float) -> None:
    model, theirs = varied
    eos = frequent_token(hf_generate(theirs, eos_token_id=0).tolist())
    expected = until_eos(hf_generate(theirs, eos_token_id=eos, num_beams=4, num_return_sequences=4,
                                     length_penalty=length_penalty, early_stopping=True), eos)
    results = generate(model, SOURCES, config(eos_id=eos, num_beams=4, num_return_sequences=4,
                                              length_penalty=length_penalty, early_stopping=True))
    assert ours(results) == expected
    assert any(row[-1] == eos for row in expected)


@pytest.mark.parametrize("overrides", [{}, VARIED], ids=["tied", "separate"])
def test_saved_model_loads_in_transformers_and_agrees(tmp_path: Path, overrides: dict[str, object]) -> None:
    loaded = load_hf(marian(tmp_path / "hf", **overrides))
    save_hf(loaded.model, tmp_path / "out", hf_config=loaded.hf_config)
    back = hf_model("MarianMTModel", tmp_path / "out")
    source, mask = right_padded(SOURCES, MARIAN_PAD)
    with torch.no_grad():
        expected = loaded.model(source, targets())
        torch.testing.assert_close(back(input_ids=source, attention_mask=mask, decoder_input_ids=targets()).logits,
                                   expected, atol=ATOL, rtol=0)


def test_our_own_encoder_decoder_round_trips(tmp_path: Path) -> None:
    """A model of ours (not loaded from Marian) saved as Marian: ``transformers`` computes the same logits."""
    config_ = TransformerConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1, n_decoder_layers=2, norm_first=False,
                                sinusoid_layout="halves", activation="relu", output_bias=True, pad_id=1)
    torch.manual_seed(0)
    model = EncoderDecoder(config_).eval()
    with torch.no_grad():
        model.lm_head.bias.normal_()
    save_hf(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["decoder_start_token_id"] == 1
    source, target = torch.randint(2, 50, (2, 6)), torch.randint(2, 50, (2, 5))
    with torch.no_grad():
        theirs = hf_model("MarianMTModel", tmp_path)(input_ids=source, decoder_input_ids=target).logits
        torch.testing.assert_close(theirs, model(source, target), atol=ATOL, rtol=0)


def test_different_encoder_and_decoder_widths_are_an_error(tmp_path: Path) -> None:
    directory = marian(tmp_path)
    values = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**values, "decoder_ffn_dim": 128}))
    with pytest.raises(ValueError, match="encoder_ffn_dim=64 differs from decoder_ffn_dim=128"):
        load_hf(directory)
