"""Decoding runs in the model's dtype (bf16 here) and scores in float32."""

from __future__ import annotations

import pytest
import torch
from tiny_models import BOS, scored_tokens, sequence_log_prob, tiny_lm, tiny_seq2seq

from multihead.generation import GenerationConfig, generate


@pytest.mark.parametrize("seq2seq", [False, True])
@pytest.mark.parametrize("beams", [1, 3])
def test_bf16_models_decode_in_bf16_with_float32_scores(seq2seq: bool, beams: int) -> None:
    model = (tiny_seq2seq() if seq2seq else tiny_lm()).to(torch.bfloat16)
    inputs = [[3, 4, 5], [6], [7, 8, 9, 10]]
    config = GenerationConfig(max_new_tokens=6, num_beams=beams, num_return_sequences=beams, bos_id=BOS, eos_id=5)
    logits_dtypes: set[torch.dtype] = set()
    hook = model.lm_head.register_forward_hook(lambda _module, _args, out: logits_dtypes.add(out.dtype))
    results = generate(model, inputs, config)
    hook.remove()
    assert logits_dtypes == {torch.bfloat16}  # the model ran in its own dtype, caches included
    for source, hyps in zip(inputs, results, strict=True):
        for h in hyps:
            assert all(0 <= token < 16 for token in h.tokens)
            # full bf16 forwards round differently from cached steps: agreement to bf16 accuracy only
            recomputed = sequence_log_prob(model, source, scored_tokens(h.tokens, h.stop_token))
            assert h.log_prob == pytest.approx(recomputed, abs=0.1 * h.length)
