"""A toy classification task and trainer factory shared by the trainer tests and the DDP worker."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from multihead.data import BucketBatchSampler
from multihead.model_dir import write_model_files
from multihead.models import SequenceClassifier, TransformerConfig
from multihead.tasks.classification import ClassificationTask, EncodedExamples
from multihead.training import TrainData, Trainer, TrainingConfig

PAD, VOCAB = 0, 20


def toy_examples(count: int, seed: int) -> EncodedExamples:
    """Label 1 sequences are mostly tokens 10..19, label 0 ones mostly 1..9: learnable in a few dozen steps."""
    generator = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for _ in range(count):
        length = int(torch.randint(4, 12, (1,), generator=generator))
        label = int(torch.rand(1, generator=generator) < 0.5)
        own = torch.randint(10, VOCAB, (length,), generator=generator) if label else torch.randint(
            1, 10, (length,), generator=generator)
        noise = torch.randint(1, VOCAB, (length,), generator=generator)
        keep_own = torch.rand(length, generator=generator) < 0.7
        ids.append(torch.where(keep_own, own, noise).tolist())
        labels.append(label)
    return EncodedExamples(ids=ids, labels=labels)


def make_trainer(output_dir: Path, *, dropout: float = 0.1, **changes: object) -> tuple[Trainer, nn.Module]:
    settings = {"steps": 40, "batch_size": 16, "lr": 3e-3, "eval_every": 10, "log_every": 5, "warmup_steps": 4,
                "progress": False, "seed": 3, **changes}
    config = TrainingConfig(**settings)  # type: ignore[arg-type]
    torch.manual_seed(config.seed)
    model = SequenceClassifier(
        TransformerConfig(vocab_size=VOCAB, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=dropout, pad_id=PAD),
        n_classes=2,
    )
    train, validation = toy_examples(256, seed=0), toy_examples(64, seed=1)
    sampler = BucketBatchSampler([len(x) for x in train.ids], batch_size=config.batch_size, seed=config.seed,
                                 drop_last=True)
    trainer = Trainer(
        model=model,
        task=ClassificationTask(label_names=["no", "yes"], label_smoothing=config.label_smoothing),
        train=TrainData(sampler=sampler, collate=lambda indices: train.collate(indices, pad_id=PAD)),
        validation=lambda: validation.batches(batch_size=32, pad_id=PAD),
        config=config,
        output_dir=output_dir,
        save_files=lambda directory, trained: write_model_files(directory, model=trained),
    )
    return trainer, model
