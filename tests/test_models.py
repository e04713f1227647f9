"""Models: configs, causality, caches, padding, batch independence, weight tying and task heads."""

from __future__ import annotations

import itertools

import pytest
import torch

from multihead import (
    DecoderLM,
    Encoder,
    EncoderDecoder,
    SequenceClassifier,
    SpanExtractor,
    TokenClassifier,
    TransformerConfig,
)
from multihead.models import best_spans

ATOL = 1e-5
POSITIONS = ["sinusoidal", "learned", "rope", "alibi", "none"]


def config(**changes: object) -> TransformerConfig:
    values = {"vocab_size": 50, "d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "dropout": 0.0,
              "max_length": 64, **changes}
    return TransformerConfig(**values)  # type: ignore[arg-type]


# --- configuration -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"d_model": 30, "n_heads": 4}, "d_model (30)"),
        ({"n_kv_heads": 3}, "n_kv_heads (3)"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"activation": "tanh"}, "'tanh'"),
        ({"positions": "relative"}, "'relative'"),
        ({"dropout": 1.5}, "1.5"),
        ({"pad_id": 99}, "pad_id 99"),
        ({"norm": "batch"}, "'batch'"),
    ],
)
def test_config_rejects_bad_values_by_name(changes: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        config(**changes)


def test_config_presets_round_trip_through_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name in ("tiny", "small", "base"):
        original = TransformerConfig.preset(name, dropout=0.2)
        original.save(tmp_path / "config.json")
        assert TransformerConfig.load(tmp_path / "config.json") == original
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        TransformerConfig.preset("huge")
    with pytest.raises(ValueError, match=r"unknown TransformerConfig keys \['n_layer'\]"):
        TransformerConfig.from_dict({"vocab_size": 10, "n_layer": 2})
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "vocab_size": 10,\n  oops\n}')
    with pytest.raises(ValueError, match=r"broken.json: line 3"):
        TransformerConfig.load(broken)


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        config().d_model = 64  # type: ignore[misc]


# --- decoder-only language model --------------------------------------------------------------------------------


CACHE_CASES = [*itertools.product(POSITIONS, [None]), ("rope", 2), ("alibi", 1)]


@pytest.mark.parametrize(("positions", "n_kv_heads"), CACHE_CASES)
def test_decoder_lm_cached_decoding_equals_full_forward(positions: str, n_kv_heads: int | None) -> None:
    torch.manual_seed(0)
    model = DecoderLM(config(positions=positions, n_kv_heads=n_kv_heads)).eval()
    ids = torch.randint(0, 50, (3, 11))
    full = model(ids)
    cache = model.make_cache(batch_size=3, max_length=16)
    steps = [model(ids[:, :5], cache=cache), model(ids[:, 5:7], cache=cache)]
    steps += [model(ids[:, i : i + 1], cache=cache) for i in range(7, 11)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("positions", POSITIONS)
def test_decoder_lm_is_causal(positions: str) -> None:
    torch.manual_seed(0)
    model = DecoderLM(config(positions=positions)).eval()
    ids = torch.randint(0, 50, (2, 10))
    changed = ids.clone()
    changed[:, 6:] = torch.randint(0, 50, (2, 4))
    torch.testing.assert_close(model(changed)[:, :6], model(ids)[:, :6], atol=0, rtol=0)


def test_decoder_lm_left_padding_with_mask_and_positions_matches_unpadded() -> None:
    torch.manual_seed(0)
    model = DecoderLM(config(positions="learned")).eval()
    short = torch.randint(1, 50, (1, 5))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1)  # (1, 8), three pads on the left
    mask = padded != 0
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (1, 8)
    got = model(padded, mask=mask, position_ids=position_ids)[:, 3:]
    torch.testing.assert_close(got, model(short), atol=ATOL, rtol=0)
    assert not got.isnan().any()


def test_last_only_logits_equal_the_last_position_of_forward() -> None:
    torch.manual_seed(0)
    model = DecoderLM(config(positions="rope", n_kv_heads=2)).eval()
    ids = torch.randint(1, 50, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, :2] = False  # left padding on one row
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (3, 7)
    full, cache = model(ids, mask=mask, position_ids=position_ids), model.make_cache(batch_size=3, max_length=8)
    last = model(ids, mask=mask, position_ids=position_ids, cache=cache, last_only=True)
    assert last.shape == (3, 1, 50)
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-6, rtol=0)
    step = torch.randint(1, 50, (3, 1))
    step_mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.bool)], dim=1)  # (3, 8)
    whole = model(torch.cat([ids, step], dim=1), mask=step_mask, position_ids=(step_mask.cumsum(1) - 1).clamp(min=0))
    stepped = model(step, mask=step_mask, cache=cache, position_ids=position_ids[:, -1:] + 1, last_only=True)
    torch.testing.assert_close(stepped[:, 0], whole[:, -1], atol=ATOL, rtol=0)


def test_weight_tying_is_optional() -> None:
    tied, untied = DecoderLM(config()), DecoderLM(config(tie_embeddings=False))
    assert tied.lm_head.weight is tied.decoder.embeddings.tokens.weight
    assert untied.lm_head.weight is not untied.decoder.embeddings.tokens.weight
    count = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert count == 50 * 32


def test_out_of_vocabulary_id_is_named() -> None:
    with pytest.raises(ValueError, match="token id 77 is outside the vocabulary"):
        DecoderLM(config())(torch.tensor([[1, 77]]))


# --- encoder-decoder ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("positions", "target_vocab"), [("sinusoidal", None), ("rope", 40), ("learned", None)])
def test_encoder_decoder_cached_decoding_equals_full_forward(positions: str, target_vocab: int | None) -> None:
    torch.manual_seed(0)
    model = EncoderDecoder(config(positions=positions, target_vocab_size=target_vocab, n_decoder_layers=3)).eval()
    source = torch.randint(1, 50, (2, 7))
    source[1, 4:] = 0  # padding
    target = torch.randint(1, 40, (2, 6))
    full = model(source, target)
    memory = model.encode(source, source_mask=model.source_mask(source))
    cache = model.make_cache(batch_size=2, source_length=7, max_length=8)
    steps = [model.decode(target[:, :2], memory, source_mask=source != 0, cache=cache)]
    steps += [model.decode(target[:, i : i + 1], memory, source_mask=source != 0, cache=cache) for i in range(2, 6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)
    assert len(model.decoder.layers) == 3


def test_encoder_decoder_ignores_padded_source_content_and_other_examples() -> None:
    torch.manual_seed(0)
    model = EncoderDecoder(config()).eval()
    source = torch.randint(1, 50, (3, 8))
    source[0, 5:] = 0
    target = torch.randint(1, 50, (3, 4))
    logits = model(source, target)
    alone = model(source[:1, :5], target[:1])  # the same sentence without padding, in a batch of one
    torch.testing.assert_close(logits[:1], alone, atol=ATOL, rtol=0)
    shuffled = model(source[[2, 0, 1]], target[[2, 0, 1]])
    torch.testing.assert_close(shuffled, logits[[2, 0, 1]], atol=ATOL, rtol=0)


def test_shared_vocabulary_shares_one_embedding() -> None:
    shared = EncoderDecoder(config())
    assert shared.encoder.embeddings is shared.decoder.embeddings
    separate = EncoderDecoder(config(target_vocab_size=30))
    assert separate.decoder.embeddings.tokens.num_embeddings == 30
    assert separate(torch.randint(0, 50, (1, 4)), torch.randint(0, 30, (1, 3))).shape == (1, 3, 30)


# --- encoder and heads ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("norm", "norm_first", "activation"), [("layer", False, "relu"), ("rms", True, "swiglu")])
def test_encoder_padding_invariance(norm: str, norm_first: bool, activation: str) -> None:
    torch.manual_seed(0)
    encoder = Encoder(config(norm=norm, norm_first=norm_first, activation=activation)).eval()
    ids = torch.randint(1, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(encoder(padded)[:, :6], encoder(ids), atol=ATOL, rtol=0)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_sequence_classifier_ignores_padding(pooling: str) -> None:
    torch.manual_seed(0)
    model = SequenceClassifier(config(), n_classes=3, pooling=pooling).eval()  # type: ignore[arg-type]
    ids = torch.randint(1, 50, (2, 5))
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    logits = model(padded)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits, model(ids), atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="n_classes must be >= 2, got 1"):
        SequenceClassifier(config(), n_classes=1)


def test_token_classifier_and_span_extractor_shapes_and_masking() -> None:
    torch.manual_seed(0)
    ids = torch.randint(1, 50, (2, 7))
    ids[1, 4:] = 0
    assert TokenClassifier(config(), n_labels=5)(ids).shape == (2, 7, 5)
    start, end = SpanExtractor(config()).eval()(ids)
    assert start.shape == end.shape == (2, 7)
    assert (start[1, 4:] == torch.finfo(start.dtype).min).all()
    spans = best_spans(start, end, max_length=3)
    assert (spans[1] < 4).all()


def test_best_spans_matches_brute_force() -> None:
    torch.manual_seed(0)
    start, end = torch.randn(4, 9), torch.randn(4, 9)
    spans = best_spans(start, end, max_length=4)
    for row in range(4):
        candidates = [(s, e) for s in range(9) for e in range(s, min(s + 4, 9))]
        best = max(candidates, key=lambda pair: float(start[row, pair[0]] + end[row, pair[1]]))
        assert tuple(spans[row].tolist()) == best
