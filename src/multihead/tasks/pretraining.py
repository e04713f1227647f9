"""Self-pretraining: masked-token prediction on a task's own training texts before fine-tuning.

Krishna et al. (2022, "Downstream datasets make surprisingly good pretraining corpora") found that
pretraining a Transformer with masked language modelling on nothing but the downstream training set, then
fine-tuning, beats training from random initialisation. No outside data is read: the texts are the ones
the classifier trains on, so test figures stay honest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.data import BucketBatchSampler, pad_batch
from multihead.experiment import PretrainingConfig
from multihead.model_dir import write_model_files
from multihead.models import TransformerConfig
from multihead.models.masked_lm import MaskedLM
from multihead.training import TrainData, Trainer, TrainingConfig

__all__ = ["MaskedLMTask", "PretrainingConfig", "mask_tokens", "pretrain_encoder"]

Batch = dict[str, Tensor]
IGNORE = -100


def mask_tokens(ids: Tensor, real: Tensor, *, rate: float, mask_id: int, vocab_size: int,
                protected: Sequence[int], generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT masking of ``(B, T)`` ids: returns ``(inputs, targets)``, targets -100 where nothing is predicted.

    ``real`` ``(B, T)`` marks real tokens; ``protected`` ids (specials) are never chosen.
    """
    candidates = real.clone()
    for token in protected:
        candidates &= ids != token
    chosen = (torch.rand(ids.shape, generator=generator) < rate) & candidates  # (B, T)
    targets = ids.masked_fill(~chosen, IGNORE)
    action = torch.rand(ids.shape, generator=generator)  # (B, T): < 0.8 mask, < 0.9 random, else keep
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, targets


class MaskedLMTask:
    """Cross-entropy on the chosen positions; validation loss and accuracy on them."""

    def count(self, batch: Batch) -> int:
        return max(int((batch["targets"] != IGNORE).sum()), 1)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["ids"], mask=batch["mask"]).float()  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE,
                               reduction="sum")

    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        total, correct, count = 0.0, 0, 0
        for batch in batches:
            logits = model(batch["ids"], mask=batch["mask"]).float()
            targets = batch["targets"]
            total += float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                           reduction="sum"))
            chosen = targets != IGNORE
            correct += int(((logits.argmax(-1) == targets) & chosen).sum())
            count += int(chosen.sum())
        return {"loss": total / max(count, 1), "accuracy": correct / max(count, 1)}


def pretrain_encoder(
    model_config: TransformerConfig, sequences: Sequence[Sequence[int]], *, settings: PretrainingConfig,
    mask_id: int, protected: Sequence[int], output_dir: Path, seed: int, precision: str = "fp32",
    progress: bool = True, resume: bool = False, log: Callable[[str], None] = print,
) -> dict[str, Tensor]:
    """Train a ``MaskedLM`` on ``sequences`` (token ids, specials included) and return its encoder's weights.

    Checkpoints go to ``output_dir`` (``last/`` for resuming); a finished phase is not repeated on resume.
    """
    assert model_config.pad_id is not None
    pad_id, vocab_size = model_config.pad_id, model_config.vocab_size
    torch.manual_seed(seed)
    model = MaskedLM(model_config)
    finished = output_dir / "finished"
    if resume and finished.is_file():
        from safetensors.torch import load_model

        load_model(model, str(output_dir / "last" / "model.safetensors"))
        return model.encoder.state_dict()
    sampler = BucketBatchSampler([len(x) for x in sequences], batch_size=settings.batch_size, shuffle=True,
                                 seed=seed, drop_last=len(sequences) >= settings.batch_size)

    def collate(indices: list[int]) -> Batch:
        ids, real = pad_batch([sequences[i] for i in indices], pad_id=pad_id)
        inputs, targets = mask_tokens(ids, real, rate=settings.mask_rate, mask_id=mask_id, vocab_size=vocab_size,
                                      protected=protected)
        return {"ids": inputs, "mask": real, "targets": targets}

    config = TrainingConfig(steps=settings.steps, batch_size=settings.batch_size, lr=settings.lr,
                            warmup_steps=settings.warmup_steps, weight_decay=settings.weight_decay,
                            eval_every=settings.steps, seed=seed, precision=precision, progress=progress,
                            metric="loss", mode="min")
    log(f"self-pretraining: masked-token prediction for {settings.steps} steps on the training texts")
    trainer = Trainer(model=model, task=MaskedLMTask(), train=TrainData(sampler=sampler, collate=collate),
                      validation=None, config=config, output_dir=output_dir,
                      save_files=lambda directory, trained: write_model_files(directory, model=trained))
    trainer.fit(resume=resume and (output_dir / "last").is_dir())
    finished.write_text("done\n")
    return model.encoder.state_dict()
