"""Reading SmolLM2-135M-Instruct's Q4_1 GGUF file, side by side in one run: ``multihead.interop.gguf.load_gguf``
(model, tokenizer, chat template) against ``transformers`` (``AutoModelForCausalLM.from_pretrained(folder,
gguf_file=...)`` dequantized to float32, and ``AutoTokenizer`` likewise), interleaved ``--repeats`` times; then
how far apart the two models' logits are on a padded batch of chat prompts.

    python benchmarks/gguf_load.py [--repeats R] [--threads N]

Prints wall and CPU seconds per load (median), their ratio, and the largest absolute logit difference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from llm_common import QUESTIONS, gguf_path, machine


def timed(load: Callable[[], Any]) -> tuple[Any, float, float]:
    """``load()``, its wall seconds and its CPU seconds (this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = load()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="loads of each side, interleaved (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    from multihead.chat_template import ChatTemplate
    from multihead.interop.gguf import load_gguf

    path = gguf_path()
    options: dict[str, Any] = {"gguf_file": path.name, "dtype": torch.float32}
    if hasattr(transformers, "GgufConfig"):
        options["quantization_config"] = transformers.GgufConfig(dequantize=True)

    def theirs() -> tuple[Any, Any]:
        model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, **options).eval()
        return model, transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)

    times: dict[str, list[tuple[float, float]]] = {"ours": [], "transformers": []}
    ours = reference = None
    for _ in range(args.repeats):
        ours, *ours_time = timed(lambda: load_gguf(path))
        times["ours"].append(tuple(ours_time))
        reference, *their_time = timed(theirs)
        times["transformers"].append(tuple(their_time))
    assert ours is not None and reference is not None
    print(f"machine: {machine()}, {args.threads} threads")
    print(f"{path.name}: load (model, tokenizer, chat template), median of {args.repeats} interleaved loads")
    print(f"{'':14} {'wall s':>8} {'CPU s':>8}")
    medians = {}
    for name, values in times.items():
        medians[name] = (statistics.median(v[0] for v in values), statistics.median(v[1] for v in values))
        print(f"{name:14} {medians[name][0]:8.1f} {medians[name][1]:8.1f}")
    print(f"{'ours/theirs':14} {medians['ours'][0] / medians['transformers'][0]:8.2f} "
          f"{medians['ours'][1] / medians['transformers'][1]:8.2f}")

    template = ChatTemplate.from_tokenizer(ours.tokenizer)
    assert template is not None
    rows = [template.encode([{"role": "user", "content": question}]) for question in QUESTIONS]
    longest = max(map(len, rows))
    ids = torch.full((len(rows), longest), ours.tokenizer.pad_id or 0, dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for row, tokens in enumerate(rows):
        ids[row, longest - len(tokens):], mask[row, longest - len(tokens):] = torch.tensor(tokens), True
    positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
    with torch.inference_mode():
        mine = ours.model(ids, mask=mask, position_ids=positions)[mask]
        their = reference[0](input_ids=ids, attention_mask=mask.long(), position_ids=positions).logits[mask]
    print(f"logits of {len(rows)} chat prompts ({int(mask.sum())} tokens, left-padded to {longest}): max |ours - "
          f"theirs| = {float((mine - their).abs().max()):.2e}, largest |logit| {float(their.abs().max()):.1f}; "
          f"argmax equal at {float((mine.argmax(-1) == their.argmax(-1)).float().mean()):.4f} of positions")


if __name__ == "__main__":
    main()
