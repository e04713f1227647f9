"""Self-pretraining: BERT masking, the masked-LM head, and a classifier that starts from the pretrained encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multihead.experiment import build_experiment
from multihead.models import TransformerConfig
from multihead.models.masked_lm import MaskedLM
from multihead.tasks.classification import train_classifier
from multihead.tasks.pretraining import IGNORE, mask_tokens


def test_masking_follows_berts_recipe() -> None:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 50, (200, 100), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    real = torch.ones_like(ids, dtype=torch.bool)
    real[:, 90:] = False
    inputs, targets = mask_tokens(ids, real, rate=0.15, mask_id=7, vocab_size=50, protected=[2, 3],
                                  generator=torch.Generator().manual_seed(1))
    chosen = targets != IGNORE
    assert not chosen[:, 0].any() and not chosen[:, 90:].any()  # specials and padding never chosen
    assert torch.equal(targets[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    share = chosen.sum() / (real.sum() - 200)
    assert 0.14 < share < 0.16
    masked = (inputs[chosen] == 7).float().mean()
    kept = (inputs[chosen] == ids[chosen]).float().mean()
    assert 0.77 < masked < 0.83 and 0.08 < kept < 0.13  # 80% [MASK]; 10% kept (+ random draws of itself)


def test_masked_lm_ties_its_output_to_the_embeddings() -> None:
    torch.manual_seed(0)
    model = MaskedLM(TransformerConfig.preset("tiny", vocab_size=30)).eval()
    with torch.no_grad():
        model.bias.normal_()
    ids = torch.randint(30, (2, 5))
    with torch.no_grad():
        hidden = model.norm(torch.nn.functional.gelu(model.transform(model.encoder(ids))))
        expected = hidden @ model.encoder.embeddings.tokens.weight.T + model.bias  # (2, 5, 30)
        torch.testing.assert_close(model(ids), expected)
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in model.encoder.parameters())
    assert extra == 64 * 64 + 64 + 2 * 64 + 30  # transform, norm, bias: no separate output matrix


def test_classifier_starts_from_the_self_pretrained_encoder(tmp_path: Path) -> None:
    lines = [f"good {w} film\tpositive" if i % 2 else f"bad {w} film\tnegative"
             for i, w in enumerate(["fun", "dull", "long", "short", "new", "old"] * 20)]
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "\n".join(lines) + "\n")
    config = build_experiment({
        "output_dir": str(tmp_path / "run"),
        "data": {"train": str(tmp_path / "train.tsv"), "max_length": 16},
        "tokenizer": {"kind": "word", "vocab_size": 100, "min_frequency": 1},
        "model": {"preset": "tiny", "d_model": 32, "n_layers": 1, "dropout": 0.0},
        "training": {"steps": 10, "batch_size": 8, "eval_every": 10, "progress": False},
        "pretraining": {"steps": 20, "batch_size": 8, "warmup_steps": 2},
    })
    result = train_classifier(config, log=lambda _: None)
    assert (tmp_path / "run" / "pretraining" / "finished").is_file()
    assert (tmp_path / "run" / "pretraining" / "last" / "model.safetensors").is_file()
    assert result.best_validation is not None
    tokenizer_vocab = (tmp_path / "run" / "best" / "tokenizer.json").read_text()
    assert "[MASK]" in tokenizer_vocab
    with pytest.raises(ValueError, match=r"pretraining\.mask_rate"):
        build_experiment({"data": {"train": "x.tsv"}, "pretraining": {"mask_rate": 0.0}})
