"""Run the toy training for a few steps and save the final weights; started by the DDP test,
alone or under ``torchrun --nproc_per_node 2``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from toy import make_trainer

from multihead.training import distributed

if __name__ == "__main__":
    torch.set_num_threads(1)
    output = Path(sys.argv[1])
    trainer, model = make_trainer(output / "run", dropout=0.0, steps=6, batch_size=16, eval_every=3)
    trainer.fit()
    if distributed.is_main_process():
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(output / "weights.safetensors"))
    if distributed.world()[0] > 1:
        torch.distributed.destroy_process_group()
