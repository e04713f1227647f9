"""The pointer-generator (``copy_attention``): a normalised mixture equal to a float64 reference, padding-blind,
cached decoding equal to uncached decoding, saved and loaded, and a copy task learned exactly."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from multihead import EncoderDecoder, TransformerConfig
from multihead.errors import ConfigError
from multihead.generation import GenerationConfig, generate
from multihead.model_dir import load_model_dir, write_model_files
from multihead.models.copy import CopyCache, copy_distribution
from threads import one_intra_op_thread

VOCAB, PAD, BOS, EOS = 24, 0, 1, 2

_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)


def copy_model(*, seed: int = 0, std: float = 0.2, **overrides: object) -> EncoderDecoder:
    """A tiny random pointer-generator, its matrices drawn wide so that the mixture is far from uniform."""
    torch.manual_seed(seed)
    options: dict[str, object] = {"vocab_size": VOCAB, "d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64,
                                  "dropout": 0.0, "max_length": 64, "positions": "sinusoidal", "pad_id": PAD,
                                  "copy_attention": True}
    model = EncoderDecoder(TransformerConfig(**{**options, **overrides}))  # type: ignore[arg-type]
    for parameter in model.parameters():
        if parameter.dim() >= 2:
            nn.init.normal_(parameter, mean=0.0, std=std)
    return model.eval()


SOURCES = [[3, 4, 5, 4, 6, EOS], [7, 8, EOS], [9, 10, 11, 12, 13, 14, 15, EOS], [16, EOS]]


def padded(rows: list[list[int]]) -> torch.Tensor:
    longest = max(len(row) for row in rows)
    return torch.tensor([row + [PAD] * (longest - len(row)) for row in rows])  # (B, S)


def test_copy_distribution_sums_the_weight_of_each_source_token() -> None:
    weights = torch.rand(2, 3, 4, dtype=torch.float64)  # (B, T, S)
    ids = torch.tensor([[5, 1, 5, 0], [2, 3, 4, 2]])
    out = copy_distribution(weights, ids, 6)
    expected = torch.zeros(2, 3, 6, dtype=torch.float64)
    for b in range(2):
        for s in range(4):
            expected[b, :, ids[b, s]] += weights[b, :, s]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("previous", [False, True], ids=["content", "copy_previous_token"])
def test_mixture_is_a_distribution_equal_to_a_float64_reference(previous: bool) -> None:
    model = copy_model(copy_previous_token=previous)
    source, target = padded(SOURCES), torch.tensor([[BOS, 3, 4, 9], [BOS, 7, 7, 8], [BOS, 11, 2, 2], [BOS, 3, 3, 3]])
    with torch.no_grad():
        log_probs = model(source, target)  # (B, T, V)
        mask = source != PAD  # (B, S)
        memory = model.encode(source, source_mask=mask).double()  # (B, S, D)
        hidden = model.decoder(target, memory.float(), context_mask=mask).double()  # (B, T, D)
        vocab = (hidden @ model.lm_head.weight.double().T).softmax(dim=-1)  # (B, T, V)
        attention = model.copy_generator.attention
        inputs = model.decoder.embeddings.tokens(target).double()  # (B, T, D)
        query_from, keys_from = hidden, memory
        if previous:  # the input token joins the query, the token before each source position the keys
            before = torch.cat([torch.full((4, 1), PAD), source[:, :-1]], dim=1)  # (B, S)
            query_from = hidden + inputs @ model.copy_generator.input_queries.weight.double().T
            keys_from = memory + (model.encoder.embeddings.tokens(before).double()
                                  @ model.copy_generator.previous_keys.weight.double().T)
        q = query_from @ attention.q_proj.weight.double().T + attention.q_proj.bias.double()  # (B, T, D)
        k = keys_from @ attention.k_proj.weight.double().T + attention.k_proj.bias.double()  # (B, S, D)
        v = keys_from @ attention.v_proj.weight.double().T + attention.v_proj.bias.double()
        scores = (q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])).masked_fill(~mask[:, None, :], -math.inf)
        weights = scores.softmax(dim=-1)  # (B, T, S), one head
        context = weights @ v @ attention.out_proj.weight.double().T + attention.out_proj.bias.double()
        switch = model.copy_generator.switch
        p_gen = torch.sigmoid(torch.cat([hidden, context, inputs], dim=-1) @ switch.weight.double().T
                              + switch.bias.double())  # (B, T, 1)
        copied = torch.zeros_like(vocab)
        for b in range(source.shape[0]):
            for s in range(source.shape[1]):
                copied[b, :, source[b, s]] += weights[b, :, s]
        expected = p_gen * vocab + (1 - p_gen) * copied
    assert log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(dim=-1), torch.ones(4, 4), rtol=0, atol=1e-6)
    torch.testing.assert_close(expected.sum(dim=-1), torch.ones(4, 4, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(log_probs.exp().double(), expected, rtol=1e-4, atol=1e-6)
    assert float(p_gen.min()) > 0.01 and float(p_gen.max()) < 0.99  # both parts really mix
    # a source token gets more than the generator gives it: the copy part adds to it
    assert bool((log_probs.exp()[0, :, 4] > vocab[0, :, 4].float() * p_gen[0, :, 0].float()).all())


def test_padding_of_the_source_changes_nothing() -> None:
    model = copy_model()
    source, target = torch.tensor([[3, 4, 5, EOS]]), torch.tensor([[BOS, 3, 4]])
    with torch.no_grad():
        alone = model(source, target)
        more = model(torch.tensor([[3, 4, 5, EOS, PAD, PAD, PAD]]), target)
    torch.testing.assert_close(more, alone, rtol=1e-5, atol=1e-5)


def test_gradients_are_finite_for_tokens_the_source_lacks() -> None:
    model = copy_model().train()
    source, target = padded(SOURCES[:2]), torch.tensor([[BOS, 20, 21], [BOS, 22, 23]])  # never in the source
    out = model(source, target)
    loss = F.cross_entropy(out.flatten(0, 1), torch.tensor([20, 21, 2, 22, 23, 2]), label_smoothing=0.1)
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(bool(p.grad.isfinite().all()) for p in model.parameters() if p.grad is not None)
    assert model.copy_generator.switch.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("previous", [False, True], ids=["content", "copy_previous_token"])
def test_cached_step_by_step_decoding_equals_the_full_forward(previous: bool) -> None:
    model = copy_model(copy_previous_token=previous)
    source, target = padded(SOURCES), torch.tensor([[BOS, 3, 4, 9, 5], [BOS, 7, 7, 8, 2], [BOS, 11, 2, 2, 9],
                                                    [BOS, 3, 3, 3, 16]])
    with torch.no_grad():
        full = model(source, target)  # (B, T, V)
        mask = source != PAD
        memory = model.encode(source, source_mask=mask)
        cache = model.make_cache(batch_size=4, source_length=source.shape[1], max_length=8)
        assert isinstance(cache, CopyCache)
        steps = [model.decode(target[:, t:t + 1], memory, source_mask=mask, cache=cache, source_ids=source)
                 for t in range(target.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="source_ids"):
        model.decode(target, memory, source_mask=mask)


@pytest.mark.parametrize("previous", [False, True], ids=["content", "copy_previous_token"])
@pytest.mark.parametrize("beams", [1, 3])
def test_generate_with_and_without_the_cache_agree(beams: int, previous: bool) -> None:
    model = copy_model(seed=1, copy_previous_token=previous)
    config = GenerationConfig(max_new_tokens=12, num_beams=beams, bos_id=BOS, eos_id=EOS)
    cached = generate(model, SOURCES, config)
    uncached = generate(model, SOURCES, config.replace(use_cache=False))
    for with_cache, without in zip(cached, uncached, strict=True):
        assert [h.tokens for h in with_cache] == [h.tokens for h in without]
        for a, b in zip(with_cache, without, strict=True):
            assert a.log_prob == pytest.approx(b.log_prob, abs=1e-4)
    assert any(len(hypotheses[0].tokens) > 2 for hypotheses in cached)


@pytest.mark.parametrize("previous", [False, True], ids=["content", "copy_previous_token"])
def test_saved_and_loaded_model_decodes_the_same(tmp_path, previous: bool) -> None:
    model = copy_model(seed=2, copy_previous_token=previous)
    (tmp_path / "m").mkdir()
    write_model_files(tmp_path / "m", model=model)
    loaded = load_model_dir(tmp_path / "m").model
    assert isinstance(loaded, EncoderDecoder) and loaded.config.copy_attention
    assert loaded.config.copy_previous_token == previous
    source, target = padded(SOURCES), torch.tensor([[BOS, 3, 4]] * 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(source, target), model(source, target), rtol=0, atol=0)
        if previous:  # the two maps act: the same seed without them gives other outputs
            assert not torch.equal(copy_model(seed=2)(source, target), model(source, target))
    plain = copy_model(copy_attention=False)
    assert "copy_attention" not in plain.config.to_dict()  # older model directories are unchanged
    assert ("copy_previous_token" in model.config.to_dict()) == previous


def test_copy_needs_one_shared_vocabulary() -> None:
    with pytest.raises(ConfigError, match="copy_attention"):
        TransformerConfig(vocab_size=VOCAB, target_vocab_size=30, copy_attention=True)
    with pytest.raises(ConfigError, match="copy_attention"):
        TransformerConfig(vocab_size=VOCAB, copy_attention="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs copy_attention"):
        TransformerConfig(vocab_size=VOCAB, copy_previous_token=True)
    with pytest.raises(ConfigError, match="copy_previous_token must be true or false"):
        TransformerConfig(vocab_size=VOCAB, copy_attention=True, copy_previous_token=1)  # type: ignore[arg-type]


def random_copy_batch(rows: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of 6 random tokens + EOS; the decoder reads BOS + the source and must emit the source."""
    tokens = torch.randint(3, VOCAB, (rows, 6), generator=generator)
    source = torch.cat([tokens, torch.full((rows, 1), EOS)], dim=1)  # (B, 7)
    return source, torch.cat([torch.full((rows, 1), BOS), tokens], dim=1)  # (B, 7) decoder input


@pytest.mark.parametrize(("copy", "previous"), [(True, False), (True, True), (False, False)])
def test_a_copy_task_is_learned_exactly_with_copy_attention(copy: bool, previous: bool) -> None:
    """150 Adam steps: the pointer-generator copies unseen random sequences exactly; the same model without
    copy attention has not learned the task at all (the contrast shows the mechanism at work)."""
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=2, n_layers=1, n_decoder_layers=1, d_ff=64,
                               dropout=0.0, max_length=16, positions="sinusoidal", pad_id=PAD, copy_attention=copy,
                               copy_previous_token=previous)
    model = EncoderDecoder(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(150):
        source, target_in = random_copy_batch(32, generator)
        loss = F.cross_entropy(model(source, target_in).flatten(0, 1), source.flatten())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    held_out, _ = random_copy_batch(50, torch.Generator().manual_seed(99))
    results = generate(model, held_out.tolist(), GenerationConfig(max_new_tokens=10, bos_id=BOS, eos_id=EOS))
    exact = sum(hypotheses[0].tokens == row[:-1] for hypotheses, row in zip(results, held_out.tolist(), strict=True))
    if copy:
        assert exact == 50 and float(loss) < 0.01
    else:
        assert exact < 5


@pytest.mark.parametrize("bits", [8, 4])
def test_a_quantized_copy_model_decodes_with_and_without_its_cache(bits: int) -> None:
    """Every linear layer quantized, the copy attention's included: its cache takes the activations' dtype from
    the (unquantized) embeddings, and cached beam search equals uncached (on the dequantizing path, which rounds
    alike for any number of rows; torch's kernel rounds inputs to bfloat16)."""
    from multihead.quantize import QuantizedLinear, quantize_model

    model = quantize_model(copy_model(seed=4, copy_previous_token=True), bits=bits, backend="fallback")
    assert isinstance(model.copy_generator.attention.k_proj, QuantizedLinear)
    config = GenerationConfig(max_new_tokens=10, num_beams=3, bos_id=BOS, eos_id=EOS, pad_id=PAD)
    cached = generate(model, SOURCES, config)
    uncached = generate(model, SOURCES, config.replace(use_cache=False))
    assert [[h.tokens for h in hs] for hs in cached] == [[h.tokens for h in hs] for hs in uncached]
