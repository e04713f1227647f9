"""``RNNEncoderDecoder`` (rnn-attention): additive attention against a float64 reference, cached decoding equals
teacher forcing, padding changes nothing, decoding through ``multihead.generation``, save/load, learning, and the
``multihead train`` / ``translate`` commands in-process."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.cli import main
from multihead.experiment import build_experiment
from multihead.generation import BeamSearch, DecodingState, GenerationConfig, Stopping, TokenSearch, generate
from multihead.model_dir import load_model_dir, save_model_dir
from multihead.models.additive_attention import AdditiveAttention
from multihead.models.rnn_seq2seq import RNNEncoderDecoder, RNNSeq2SeqConfig
from threads import one_intra_op_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)

PAD, BOS, EOS = 0, 1, 2
VOCAB = 16


def tiny(*, seed: int = 0, **overrides: object) -> RNNEncoderDecoder:
    """A small random model; weights widened so that its outputs depend on the source and differ per step."""
    options: dict[str, object] = {"vocab_size": VOCAB, "embedding_dim": 12, "hidden_size": 10, "attention_dim": 8,
                                  "dropout": 0.0, "pad_id": PAD}
    options.update(overrides)
    torch.manual_seed(seed)
    model = RNNEncoderDecoder(RNNSeq2SeqConfig(**options))  # type: ignore[arg-type]
    for parameter in model.parameters():
        if parameter.dim() >= 2:
            torch.nn.init.normal_(parameter, std=0.4)
    return model.eval()


def test_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"cell must be one of .* got 'rnn'"):
        RNNSeq2SeqConfig(vocab_size=10, cell="rnn")
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        RNNSeq2SeqConfig(vocab_size=10, hidden_size=0)
    with pytest.raises(ValueError, match=r"unknown RNNSeq2SeqConfig keys \['d_model'\]"):
        RNNSeq2SeqConfig.from_dict({"vocab_size": 10, "d_model": 4})
    config = RNNSeq2SeqConfig(vocab_size=10, target_vocab_size=7, cell="lstm")
    assert RNNSeq2SeqConfig.from_dict(config.to_dict()) == config and config.output_vocab_size == 7


def reference_additive(query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, attention: AdditiveAttention
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``v^T tanh(W_q s + W_k h_j + b)`` softmaxed over real positions, plainly in float64, a row at a time."""
    w_q, w_k = attention.query.weight.double(), attention.key.weight.double()
    b_k, v = attention.key.bias.double(), attention.score.weight.double()[0]
    contexts, weights = [], []
    for s, h, m in zip(query.double(), memory.double(), mask, strict=True):
        scores = torch.stack([v @ torch.tanh(w_q @ s + w_k @ h_j + b_k) for h_j in h])  # (S,)
        real = scores[m].exp() / scores[m].exp().sum()
        row = torch.zeros(len(h), dtype=torch.float64)
        row[m] = real
        weights.append(row)
        contexts.append(row @ h)
    return torch.stack(contexts), torch.stack(weights)


@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_additive_attention_matches_reference_and_ignores_padding(lengths: list[int], seed: int) -> None:
    torch.manual_seed(seed)
    attention = AdditiveAttention(query_dim=5, key_dim=6, attention_dim=4)
    longest = max(lengths)
    query, memory = torch.randn(len(lengths), 5), torch.randn(len(lengths), longest, 6)
    mask = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    context, weights = attention(query, attention.project_keys(memory), memory, mask)
    expected_context, expected_weights = reference_additive(query, memory, mask, attention)
    torch.testing.assert_close(weights.double(), expected_weights, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(context.double(), expected_context, rtol=1e-5, atol=1e-6)
    assert bool((weights[~mask] == 0).all())  # padding gets exactly 0
    changed = memory.clone()
    changed[~mask] = 100.0  # what padding holds changes nothing
    torch.testing.assert_close(attention(query, attention.project_keys(changed), changed, mask)[0], context)


def test_fully_masked_row_gives_zeros_not_nan() -> None:
    attention = AdditiveAttention(query_dim=3, key_dim=3, attention_dim=3)
    memory = torch.randn(2, 4, 3, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    context, weights = attention(torch.randn(2, 3), attention.project_keys(memory), memory, mask)
    context.sum().backward()
    assert bool((weights[1] == 0).all() and (context[1] == 0).all())
    assert memory.grad is not None and bool(torch.isfinite(memory.grad).all())


SOURCES = [[5, 6, 7, 8, 9, EOS], [10, 11, EOS], [12, EOS]]


def padded(rows: list[list[int]]) -> torch.Tensor:
    longest = max(len(row) for row in rows)
    return torch.tensor([row + [PAD] * (longest - len(row)) for row in rows])  # (B, S), right-padded


@pytest.mark.parametrize("options", [{"cell": "gru"}, {"cell": "lstm", "encoder_layers": 2, "decoder_layers": 2},
                                     {"cell": "gru", "target_vocab_size": 9, "tie_embeddings": False}])
def test_step_by_step_decoding_equals_teacher_forcing(options: dict[str, object]) -> None:
    model = tiny(**options)
    source = padded(SOURCES)
    target = torch.tensor([[BOS, 3, 4, 5, 6], [BOS, 7, 8, 3, 3], [BOS, 4, 4, 4, 4]])
    with torch.no_grad():
        full = model(source, target)  # (B, T, V)
        mask = model.source_mask(source)
        memory = model.encode(source, source_mask=mask)
        cache = model.make_cache(batch_size=3, source_length=source.shape[1])
        steps = torch.cat([model.decode(target[:, i:i + 1], memory, source_mask=mask, cache=cache)
                           for i in range(target.shape[1])], dim=1)
    assert full.shape == (3, 5, model.config.output_vocab_size) and cache.length == 5
    torch.testing.assert_close(steps, full, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padded_rows_give_the_output_of_the_row_alone(cell: str) -> None:
    model = tiny(cell=cell, encoder_layers=2)
    target = torch.tensor([[BOS, 3, 4], [BOS, 5, 6], [BOS, 7, 8]])
    with torch.no_grad():
        batch = model(padded(SOURCES), target)
        weights = model.attention_weights(padded(SOURCES), target)  # (B, T, S)
        for row, source in enumerate(SOURCES):
            alone = model(torch.tensor([source]), target[row:row + 1])
            torch.testing.assert_close(batch[row:row + 1], alone, rtol=1e-5, atol=1e-6)
            real = weights[row, :, :len(source)]
            torch.testing.assert_close(real.sum(-1), torch.ones(3))
            assert bool((real > 0).all()) and bool((weights[row, :, len(source):] == 0).all())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_beam_of_one_is_greedy_and_the_cache_changes_nothing(cell: str) -> None:
    model = tiny(cell=cell)
    config = GenerationConfig(max_new_tokens=8, bos_id=BOS, eos_id=3, pad_id=PAD, length_penalty=0.0)
    results = {}
    for kind in (TokenSearch, BeamSearch):
        with torch.inference_mode():
            state = DecodingState(model, SOURCES, max_new_tokens=8, use_cache=True, bos_id=BOS, pad_id=PAD)
            search = kind(state, config, Stopping(config.stop_ids))
            for _ in search.run():
                pass
        results[kind] = [hypotheses[0] for hypotheses in search.results()]
    greedy, beam = results[TokenSearch], results[BeamSearch]
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    assert [h.log_prob for h in beam] == pytest.approx([h.log_prob for h in greedy], abs=1e-5)
    uncached = generate(model, SOURCES, GenerationConfig(max_new_tokens=8, bos_id=BOS, eos_id=3, use_cache=False))
    assert [h[0].tokens for h in uncached] == [h.tokens for h in greedy]
    alone = [generate(model, [source], GenerationConfig(max_new_tokens=8, bos_id=BOS, eos_id=3))[0][0].tokens
             for source in SOURCES]
    assert alone == [h.tokens for h in greedy]  # batch invariance of decoding


def test_beam_search_scores_are_the_models_log_probabilities() -> None:
    model = tiny(cell="lstm", decoder_layers=2)
    config = GenerationConfig(max_new_tokens=5, bos_id=BOS, eos_id=3, num_beams=4, num_return_sequences=3)
    for source, hypotheses in zip(SOURCES, generate(model, SOURCES, config), strict=True):
        assert len(hypotheses) == 3
        for hypothesis in hypotheses:
            tokens = hypothesis.tokens + ([3] if hypothesis.finished else [])
            with torch.no_grad():
                logits = model(torch.tensor([source]), torch.tensor([[BOS, *tokens[:-1]]]))[0]  # (T, V)
            expected = logits.double().log_softmax(-1).gather(1, torch.tensor(tokens)[:, None]).sum()
            assert hypothesis.log_prob == pytest.approx(float(expected), abs=1e-4)


def test_save_and_load_model_dir_gives_identical_outputs(tmp_path: Path) -> None:
    model = tiny(cell="lstm", target_vocab_size=11, encoder_layers=2)
    save_model_dir(tmp_path / "m", model=model)
    loaded = load_model_dir(tmp_path / "m").model
    assert isinstance(loaded, RNNEncoderDecoder) and loaded.config == model.config
    target = torch.tensor([[BOS, 3, 4]] * 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(padded(SOURCES), target), model(padded(SOURCES), target), rtol=0, atol=0)


def reverse_batch(rng: random.Random, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sources ``x + [EOS]``, decoder inputs ``[BOS] + reversed(x)`` and targets ``reversed(x) + [EOS]``."""
    rows = [[rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 5))] for _ in range(n)]
    sources = padded([[*row, EOS] for row in rows])
    targets = padded([[BOS, *row[::-1], EOS] for row in rows])
    return sources, targets[:, :-1], targets[:, 1:]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_learns_to_reverse_sequences(cell: str) -> None:
    torch.manual_seed(0)
    model = RNNEncoderDecoder(RNNSeq2SeqConfig(vocab_size=VOCAB, cell=cell, embedding_dim=32, hidden_size=32,
                                               attention_dim=32, dropout=0.0))
    sources, target_in, target_out = reverse_batch(random.Random(0), 48)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        logits = model(sources, target_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    rows = [[int(t) for t in row if t != PAD] for row in sources[:8]]
    decoded = generate(model, rows, GenerationConfig(max_new_tokens=8, bos_id=BOS, eos_id=EOS, num_beams=2))
    assert [h[0].tokens for h in decoded] == [row[:-1][::-1] for row in rows]


def _write_pairs(folder: Path, n: int) -> tuple[Path, Path]:
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    sources = [" ".join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(n)]
    (folder / "train.src").write_text("\n".join(sources) + "\n")
    (folder / "train.tgt").write_text("\n".join(s.upper() for s in sources) + "\n")
    return folder / "train.src", folder / "train.tgt"


def test_train_and_translate_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = _write_pairs(tmp_path, 64)
    config = tmp_path / "rnn.yaml"
    config.write_text(
        "task: translation\n"
        f"output_dir: {tmp_path / 'run'}\n"
        f"data: {{train: {source}, train_target: {target}, validation_fraction: 0.1}}\n"
        "tokenizer: {kind: word, vocab_size: 50, min_frequency: 1, lowercase: false}\n"
        "model: {architecture: rnn-attention, cell: lstm, embedding_dim: 16, hidden_size: 16, attention_dim: 16,\n"
        "        shared_vocabulary: false}\n"
        "training: {steps: 6, batch_size: 16, warmup_steps: 0, eval_every: 3, metric: loss, mode: min,\n"
        "           progress: false}\n"
    )
    assert main(["train", str(config)]) == 0
    assert "best validation loss" in capsys.readouterr().out
    best = tmp_path / "run" / "best"
    assert isinstance(load_model_dir(best).model, RNNEncoderDecoder)
    assert (best / "target_tokenizer.json").is_file()
    assert main(["translate", str(best), "alpha beta", "gamma", "--max-new-tokens", "4"]) == 0
    assert len(capsys.readouterr().out.strip("\n").splitlines()) == 2
    assert main(["translate", str(best), "alpha", "--num-beams", "1", "--max-new-tokens", "4", "--stream"]) == 0
    assert main(["eval", str(best), "--split", "validation", "--json", "--num-beams", "2", "--limit", "4"]) == 0


def test_seq2seq_task_refuses_a_language_model_architecture(tmp_path: Path) -> None:
    from multihead.tasks.seq2seq import train_seq2seq

    source, target = _write_pairs(tmp_path, 8)
    config = build_experiment({"task": "translation", "data": {"train": str(source), "train_target": str(target)},
                               "model": {"architecture": "lstm-lm"}})
    with pytest.raises(ValueError, match=r"model\.architecture 'lstm-lm' cannot be trained for translation"):
        train_seq2seq(config, log=lambda _: None)
