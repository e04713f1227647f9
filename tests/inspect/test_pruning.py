"""Physical head pruning: a pruned model equals the unpruned one with those heads masked, saves and loads;
the pruning curve removes heads lowest importance first."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch

from multihead import DecoderLM, EncoderDecoder, SequenceClassifier, TransformerConfig
from multihead.data import pad_batch
from multihead.generation import GenerationConfig, generate
from multihead.inspect.importance import attention_modules, head_masks
from multihead.inspect.pruning import (
    PruningStep,
    heads_to_prune,
    largest_within,
    masks_without,
    prune_heads,
    pruning_curve,
)
from multihead.model_dir import load_model_dir, save_model_dir

ATOL = 1e-6


def tiny(**changes: object) -> TransformerConfig:
    values = {"vocab_size": 60, "d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "dropout": 0.0,
              "max_length": 48, "pad_id": 0, **changes}
    return TransformerConfig(**values)  # type: ignore[arg-type]


def masked(model: torch.nn.Module, removed: dict[str, list[int]]) -> AbstractContextManager[None]:
    return head_masks(model, masks_without(model, removed))


def padded_ids() -> tuple[torch.Tensor, torch.Tensor]:
    return pad_batch([[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]], pad_id=0)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("positions", ["sinusoidal", "rope"])
def test_pruned_classifier_equals_masked(positions: str) -> None:
    """Encoder classifier on a padded (packed) batch: pruned logits equal masked logits, fp32 to ~1e-6;
    one layer loses every head."""
    torch.manual_seed(0)
    model = SequenceClassifier(tiny(positions=positions), n_classes=3).eval()
    removed = {"encoder.0.self_attn": [1, 3], "encoder.1.self_attn": [0, 1, 2, 3]}
    pruned = prune_heads(model, removed)
    ids, mask = padded_ids()
    with torch.no_grad(), masked(model, removed):
        expected = model(ids, mask=mask)
    with torch.no_grad():
        got = pruned(ids, mask=mask)
        unpruned = model(ids, mask=mask)
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)
    assert not torch.allclose(got, unpruned, atol=1e-3), "pruning must change the model"
    assert pruned.config.pruned_heads == {"encoder.0.self_attn": (1, 3), "encoder.1.self_attn": (0, 1, 2, 3)}
    assert pruned.encoder.layers[0].self_attn.q_proj.weight.shape == (16, 32)
    assert pruned.encoder.layers[0].self_attn.out_proj.weight.shape == (32, 16)
    assert pruned.encoder.layers[1].self_attn.n_heads == 0
    assert parameters(pruned) == parameters(model) - 6 * (4 * 32 * 8 + 3 * 8)
    assert model.config.pruned_heads is None, "the original model is left as it was"


def greedy(model: torch.nn.Module, inputs: list[list[int]], **options: object) -> list[list[int]]:
    config = GenerationConfig(max_new_tokens=8, eos_id=59, bos_id=1, pad_id=0, **options)  # type: ignore[arg-type]
    return [hypotheses[0].tokens for hypotheses in generate(model, inputs, config)]


def test_pruned_decoder_lm_equals_masked_with_kv_cache() -> None:
    """DecoderLM: full-sequence logits and KV-cached generation (greedy and beam) of the pruned model equal
    the masked model's; a layer with no self-attention head still advances its cache."""
    torch.manual_seed(1)
    model = DecoderLM(tiny(n_layers=3, tie_embeddings=False)).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # peaked distributions: no near-ties in decoding
            parameter.mul_(3.0)
    removed = {"decoder.0.self_attn": [0, 1, 2, 3], "decoder.2.self_attn": [2]}
    pruned = prune_heads(model, removed)
    ids = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 11, 12]])
    with torch.no_grad(), masked(model, removed):
        expected = model(ids)
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids), expected, rtol=0, atol=ATOL)
        cache = pruned.make_cache(batch_size=2, max_length=8)
        steps = [pruned(ids[:, :3], cache=cache)] + [pruned(ids[:, i:i + 1], cache=cache) for i in range(3, 5)]
    # cached decoding sums in another order than the full forward: fp32 rounding of logits of size ~10
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, rtol=1e-5, atol=1e-5)
    assert cache.self_attention[0].keys.shape == (2, 0, 8, 8) and cache.length == 5
    prompts = [[3, 4, 5], [8, 9]]
    with masked(model, removed):
        expected_greedy, expected_beam = greedy(model, prompts), greedy(model, prompts, num_beams=3)
    assert greedy(pruned, prompts) == expected_greedy
    assert greedy(pruned, prompts, num_beams=3) == expected_beam
    assert expected_greedy != greedy(model, prompts), "pruning must change what the model writes"


def test_pruned_encoder_decoder_self_and_cross_equals_masked() -> None:
    """EncoderDecoder: encoder self, decoder self and decoder cross heads (one cross module loses every head);
    teacher-forced logits and cached greedy/beam decoding equal the masked model's."""
    torch.manual_seed(2)
    model = EncoderDecoder(tiny(n_decoder_layers=2, tie_embeddings=False)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    removed = {"encoder.1.self_attn": [0, 2], "decoder.0.self_attn": [3], "decoder.0.cross_attn": [0, 1, 2, 3],
               "decoder.1.cross_attn": [1]}
    pruned = prune_heads(model, removed)
    source, _ = pad_batch([[5, 6, 7, 8, 2], [9, 10, 2]], pad_id=0)
    target = torch.tensor([[1, 20, 21, 22], [1, 23, 24, 25]])
    with torch.no_grad(), masked(model, removed):
        expected = model(source, target)
    with torch.no_grad():
        torch.testing.assert_close(pruned(source, target), expected, rtol=0, atol=ATOL)
    sources = [[5, 6, 7, 8, 2], [9, 10, 2], [11, 2]]
    with masked(model, removed):
        expected_greedy, expected_beam = greedy(model, sources), greedy(model, sources, num_beams=3)
    assert greedy(pruned, sources) == expected_greedy
    assert greedy(pruned, sources, num_beams=3) == expected_beam
    assert expected_greedy != greedy(model, sources), "pruning must change what the model writes"


def test_pruned_model_saves_loads_runs_and_prunes_again(tmp_path: Path) -> None:
    """``save_model_dir`` records ``pruned_heads``; ``load_model_dir`` rebuilds the smaller model with equal
    outputs; pruning the loaded model again (original head indices) equals masking the union."""
    torch.manual_seed(3)
    model = EncoderDecoder(tiny()).eval()
    first = {"encoder.0.self_attn": [1], "decoder.1.cross_attn": [0, 3]}
    pruned = prune_heads(model, first)
    save_model_dir(tmp_path / "pruned", model=pruned)
    saved = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert saved["model"]["pruned_heads"] == {"decoder.1.cross_attn": [0, 3], "encoder.0.self_attn": [1]}
    loaded = load_model_dir(tmp_path / "pruned").model
    assert loaded.config == pruned.config
    source, target = torch.tensor([[5, 6, 7, 2]]), torch.tensor([[1, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(source, target), pruned(source, target), rtol=0, atol=0)
    again = prune_heads(loaded, {"decoder.1.cross_attn": [2], "encoder.0.self_attn": [3]})
    assert again.decoder.layers[1].cross_attn.head_ids == (1,)
    union = {"encoder.0.self_attn": [1, 3], "decoder.1.cross_attn": [0, 2, 3]}
    with torch.no_grad(), masked(model, union):
        expected = model(source, target)
    with torch.no_grad():
        torch.testing.assert_close(again(source, target), expected, rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match=r"cannot prune heads \[0\]: this module's heads are \[1, 2\]"):
        prune_heads(loaded, {"decoder.1.cross_attn": [0]})


def test_grouped_query_attention_prunes_whole_groups() -> None:
    """With 4 heads over 2 key/value heads, a whole group (heads 2 and 3) prunes and equals masking it;
    half a group is an error that names the groups."""
    torch.manual_seed(4)
    model = SequenceClassifier(tiny(n_kv_heads=2), n_classes=2).eval()
    pruned = prune_heads(model, {"encoder.0.self_attn": [2, 3]})
    attention = pruned.encoder.layers[0].self_attn
    assert (attention.n_heads, attention.n_kv_heads, attention.k_proj.out_features) == (2, 1, 8)
    ids, mask = padded_ids()
    with torch.no_grad(), masked(model, {"encoder.0.self_attn": [2, 3]}):
        expected = model(ids, mask=mask)
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids, mask=mask), expected, rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match=r"prunes whole groups; heads \[1\] split the groups \[\[0, 1\]\]"):
        prune_heads(model, {"encoder.0.self_attn": [1]})


def test_unsupported_models_and_bad_names_are_clear_errors(tmp_path: Path) -> None:
    """ALiBi models refuse pruning; unknown modules and heads are named; Hugging Face export refuses a pruned
    model (while the same model unpruned exports)."""
    with pytest.raises(ValueError, match="not supported with ALiBi"):
        prune_heads(SequenceClassifier(tiny(positions="alibi"), n_classes=2), {"encoder.0.self_attn": [0]})
    model = SequenceClassifier(tiny(), n_classes=2)
    with pytest.raises(ValueError, match=r"no attention modules \['decoder.0.cross_attn'\]"):
        prune_heads(model, {"decoder.0.cross_attn": [0]})
    with pytest.raises(ValueError, match=r"pruned_heads\['encoder.0.self_attn'\] must list heads in 0..3"):
        prune_heads(model, {"encoder.0.self_attn": [4]})
    with pytest.raises(ValueError, match=r"key 'encoder\.5\.self_attn' must be"):
        tiny(pruned_heads={"encoder.5.self_attn": [0]})
    with pytest.raises(ValueError, match=r"key 'encoder\.0\.cross_attn' must be"):
        tiny(pruned_heads={"encoder.0.cross_attn": [0]})
    with pytest.raises(ValueError, match=r"names 'decoder\.1\.cross_attn', but this decoder has 2 layers without"):
        DecoderLM(tiny(pruned_heads={"decoder.1.cross_attn": [0]}))
    from multihead.interop import save_hf

    gpt2 = DecoderLM(tiny(positions="learned", activation="gelu_tanh", scale_embeddings=False))
    save_hf(gpt2, tmp_path / "full")
    with pytest.raises(ValueError, match=r"cannot save as GPT2LMHeadModel: pruned_heads must be None \(got "):
        save_hf(prune_heads(gpt2, {"decoder.0.self_attn": [1]}), tmp_path / "pruned")


def test_config_round_trips_pruned_heads(tmp_path: Path) -> None:
    """The field normalises (sorted, deduplicated, empty -> None) and survives JSON."""
    config = tiny(pruned_heads={"encoder.1.self_attn": [3, 1, 1], "encoder.0.self_attn": []})
    assert config.pruned_heads == {"encoder.1.self_attn": (1, 3)}
    config.save(tmp_path / "config.json")
    assert TransformerConfig.load(tmp_path / "config.json") == config
    assert tiny(pruned_heads={}).pruned_heads is None


def test_curve_prunes_lowest_importance_first_with_heads_masked() -> None:
    """Fixed scores: the curve removes heads in increasing score order, ``step`` of all heads at a time,
    evaluates with exactly those heads masked, and recomputes the scores at each step only when asked."""
    model = SequenceClassifier(tiny(), n_classes=2).eval()
    order = [("encoder.1.self_attn", 2), ("encoder.0.self_attn", 0), ("encoder.0.self_attn", 3),
             ("encoder.1.self_attn", 0), ("encoder.1.self_attn", 1), ("encoder.0.self_attn", 1),
             ("encoder.0.self_attn", 2), ("encoder.1.self_attn", 3)]
    scores = {"encoder.0.self_attn": torch.zeros(4), "encoder.1.self_attn": torch.zeros(4)}
    for rank, (name, head) in enumerate(order):
        scores[name][head] = rank + 1.0
    calls = []

    def importance(_: torch.nn.Module, keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        calls.append({name: mask.clone() for name, mask in keep.items()})
        return {name: value * keep[name] for name, value in scores.items()}

    def evaluate(evaluated: torch.nn.Module) -> dict[str, float]:
        masks = {name: module.head_mask for name, module in attention_modules(evaluated).items()}
        return {"kept": float(sum(mask.sum() for mask in masks.values()))}

    steps = pruning_curve(model, evaluate=evaluate, importance=importance, step=0.25)
    assert [s.pruned for s in steps] == [0, 2, 4, 6, 8]
    assert [s.metrics["kept"] for s in steps] == [8.0, 6.0, 4.0, 2.0, 0.0]
    removed_at_4 = steps[2].removed
    assert removed_at_4 == {"encoder.0.self_attn": (0, 3), "encoder.1.self_attn": (0, 2)}
    assert len(calls) == 4 and calls[1]["encoder.1.self_attn"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert heads_to_prune(steps, 0.6) == removed_at_4
    once = pruning_curve(model, evaluate=evaluate, importance=importance, step=0.25, recompute=False)
    assert len(calls) == 5 and [s.removed for s in once] == [s.removed for s in steps]
    short = pruning_curve(model, evaluate=evaluate, importance=importance, step=0.125, up_to=0.5)
    assert [s.pruned for s in short] == [0, 1, 2, 3, 4] and short[-1].removed == removed_at_4
    assert all(module.head_mask is None for module in attention_modules(model).values())


def test_largest_within_stops_at_the_first_larger_drop() -> None:
    """The chosen step is the last before the metric first falls more than ``max_drop`` below the start,
    even if a later step recovers."""
    steps = [PruningStep(pruned=n, fraction=n / 4, removed={}, metrics={"validation_accuracy": a})
             for n, a in enumerate([0.80, 0.795, 0.81, 0.785, 0.80])]
    assert largest_within(steps, "validation_accuracy", 1.0, scale=100).pruned == 2
    assert largest_within(steps, "validation_accuracy", 2.0, scale=100).pruned == 4
    with pytest.raises(ValueError, match="no metric 'bleu'"):
        largest_within(steps, "bleu", 1.0)
