"""``LSTMLanguageModel`` (lstm-lm): parity with ``torch.nn.LSTM``, cached decoding equals a full forward, left
padding changes nothing, decoding through ``multihead.generation``, save/load, learning, and the ``multihead
train`` / ``generate`` / ``eval`` commands in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.cli import main
from multihead.generation import BeamSearch, DecodingState, GenerationConfig, Stopping, TokenSearch, generate
from multihead.model_dir import load_model_dir, save_model_dir
from multihead.models.rnn_lm import LSTMLanguageModel, LSTMLMConfig
from threads import one_intra_op_thread

_one_thread = pytest.fixture(autouse=True, scope="module")(one_intra_op_thread)

VOCAB, PAD = 14, 0


def tiny(*, seed: int = 0, **overrides: object) -> LSTMLanguageModel:
    """A small random model with weights wide enough that its next-token distributions are not flat."""
    options: dict[str, object] = {"vocab_size": VOCAB, "embedding_dim": 8, "hidden_size": 12, "n_layers": 2,
                                  "dropout": 0.0, "max_length": 32, "pad_id": PAD}
    options.update(overrides)
    torch.manual_seed(seed)
    model = LSTMLanguageModel(LSTMLMConfig(**options))  # type: ignore[arg-type]
    for parameter in model.parameters():
        if parameter.dim() >= 2:
            torch.nn.init.normal_(parameter, std=0.5)
    return model.eval()


def test_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="n_layers must be a positive integer, got 0"):
        LSTMLMConfig(vocab_size=10, n_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        LSTMLMConfig(vocab_size=10, dropout=1.5)
    with pytest.raises(ValueError, match=r"unknown LSTMLMConfig keys \['d_model'\]"):
        LSTMLMConfig.from_dict({"vocab_size": 10, "d_model": 4})
    config = LSTMLMConfig(vocab_size=10, hidden_size=6, embedding_dim=4)
    assert LSTMLMConfig.from_dict(config.to_dict()) == config


def test_logits_match_a_plain_torch_lstm() -> None:
    """The model is embedding -> nn.LSTM -> (projection) -> tied head; rebuilt here from its own weights."""
    model = tiny()
    ids = torch.randint(1, VOCAB, (3, 7))
    reference = torch.nn.LSTM(8, 12, num_layers=2, batch_first=True)
    reference.load_state_dict(model.lstm.state_dict())
    with torch.no_grad():
        hidden, _ = reference(model.embeddings.weight[ids])  # (B, T, H)
        assert model.projection is not None  # tied, and H != E
        expected = (hidden @ model.projection.weight.T + model.projection.bias) @ model.embeddings.weight.T
        expected = expected + model.lm_head.bias
        torch.testing.assert_close(model(ids), expected)


@pytest.mark.parametrize("options", [{}, {"tie_embeddings": False, "n_layers": 1}, {"embedding_dim": 12}])
def test_step_by_step_decoding_equals_a_full_forward(options: dict[str, object]) -> None:
    model = tiny(**options)
    ids = torch.randint(1, VOCAB, (3, 9))
    with torch.no_grad():
        full = model(ids)  # (B, T, V)
        cache = model.make_cache(batch_size=3)
        prefix = model(ids[:, :4], cache=cache)  # a prompt, then one token at a time
        steps = torch.cat([prefix, *(model(ids[:, i:i + 1], cache=cache) for i in range(4, 9))], dim=1)
    assert cache.length == 9
    torch.testing.assert_close(steps, full, rtol=0, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=2, max_size=4), seed=st.integers(0, 1000))
def test_left_padding_gives_the_logits_of_the_prompt_alone(lengths: list[int], seed: int) -> None:
    model = tiny()
    generator = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(1, VOCAB, (n,), generator=generator).tolist() for n in lengths]
    longest = max(lengths)
    ids = torch.tensor([[PAD] * (longest - len(p)) + p for p in prompts])  # (B, P), left-padded
    mask = ids != PAD  # (B, P)
    with torch.no_grad():
        batch = model(ids, mask=mask)[:, -1]  # (B, V)
        for row, prompt in enumerate(prompts):
            alone = model(torch.tensor([prompt]))[0, -1]
            torch.testing.assert_close(batch[row], alone, rtol=1e-5, atol=1e-5)


def test_beam_of_one_is_greedy_and_batches_do_not_interact() -> None:
    model = tiny()
    prompts = [[3, 4, 5], [6], [7, 8, 9, 10, 11], [13, 3]]
    config = GenerationConfig(max_new_tokens=8, eos_id=2, length_penalty=0.0)
    results = {}
    for kind in (TokenSearch, BeamSearch):
        with torch.inference_mode():
            state = DecodingState(model, prompts, max_new_tokens=8, use_cache=True, bos_id=None, pad_id=PAD)
            search = kind(state, config, Stopping(config.stop_ids))
            for _ in search.run():
                pass
        results[kind] = [hypotheses[0].tokens for hypotheses in search.results()]
    assert results[BeamSearch] == results[TokenSearch]
    alone = [generate(model, [prompt], config)[0][0].tokens for prompt in prompts]
    uncached = generate(model, prompts, GenerationConfig(max_new_tokens=8, eos_id=2, use_cache=False))
    assert alone == results[TokenSearch] == [h[0].tokens for h in uncached]
    beams = generate(model, prompts, GenerationConfig(max_new_tokens=6, num_beams=3, num_return_sequences=2))
    assert all(len(h) == 2 and h[0].score >= h[1].score for h in beams)


def test_save_and_load_model_dir_gives_identical_outputs(tmp_path: Path) -> None:
    model = tiny(tie_embeddings=False)
    save_model_dir(tmp_path / "lm", model=model)
    loaded = load_model_dir(tmp_path / "lm").model
    assert isinstance(loaded, LSTMLanguageModel) and loaded.config == model.config
    ids = torch.randint(1, VOCAB, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)


def test_learns_a_repeating_text() -> None:
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMLMConfig(vocab_size=VOCAB, embedding_dim=16, hidden_size=32, n_layers=1,
                                           dropout=0.0))
    pattern = [3, 7, 4, 9, 4, 11, 5]  # a period of 7 in which 4 is followed by two different tokens
    stream = torch.tensor(pattern * 12)
    ids, targets = stream[:-1].view(1, -1), stream[1:].view(1, -1)  # (1, T)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(80):
        loss = torch.nn.functional.cross_entropy(model(ids)[0], targets[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    continued = generate(model, [pattern[:3]], GenerationConfig(max_new_tokens=11))[0][0].tokens
    assert continued == (pattern * 3)[3:14]


def test_train_generate_and_eval_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "text.txt").write_text("to be or not to be, that is the question.\n" * 40)
    config = tmp_path / "lstm.yaml"
    config.write_text(
        "task: language-model\n"
        f"output_dir: {tmp_path / 'run'}\n"
        f"data: {{train: {tmp_path / 'text.txt'}, validation_fraction: 0.1}}\n"
        "tokenizer: {kind: char, vocab_size: 100, min_frequency: 1, lowercase: false}\n"
        "model: {architecture: lstm-lm, embedding_dim: 16, hidden_size: 16, n_layers: 1, max_length: 24}\n"
        "training: {steps: 6, batch_size: 8, eval_every: 3, metric: loss, mode: min, progress: false}\n"
    )
    assert main(["train", str(config)]) == 0
    assert "bits per character" in capsys.readouterr().out
    best = str(tmp_path / "run" / "best")
    assert isinstance(load_model_dir(best).model, LSTMLanguageModel)
    assert main(["generate", best, "--prompt", "to be", "--do-sample", "--seed", "3", "--max-new-tokens", "40"]) == 0
    first = capsys.readouterr().out
    assert main(["generate", best, "--prompt", "to be", "--do-sample", "--seed", "3", "--max-new-tokens", "40"]) == 0
    assert capsys.readouterr().out == first and first.startswith("to be")  # seeded samples repeat, past max_length
    assert main(["generate", best, "--prompt", "to", "--max-new-tokens", "5", "--stream", "--num-beams", "2"]) == 0
    assert capsys.readouterr().out.startswith("to")
    assert main(["eval", best, "--split", "validation", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bits_per_character"] > 0
