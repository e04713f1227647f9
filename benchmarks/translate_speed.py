"""Beam-4 translation speed, side by side: ours (fp32, bf16, int8), onnxruntime, CTranslate2 (fp32, int8) and
``transformers`` ``generate``, on one saved translation model.

Run: ``python benchmarks/translate_speed.py MODEL_DIR`` (the model's own test split: Multi30k ``test_2016_flickr``
for the recipe), or with ``--source FILE --references FILE``; ``--limit N`` for a short run.

- The model is exported once to ONNX (``multihead.export``) and once to the Hugging Face Marian layout
  (``multihead.interop.save_hf``), and that folder is converted by CTranslate2's own converter
  (``ctranslate2.converters.TransformersConverter``, fp32 and int8). Marian's layout holds post-norm models with
  sinusoidal positions in the ``halves`` layout and one shared vocabulary (train with ``--set model.norm_first=false
  --set model.sinusoid_layout=halves``); for other models these three columns are skipped, with the reason.
- CTranslate2's Marian loader assumes Marian's conventions: decoding starts from a zero vector (Marian's padding
  embedding) and the last vocabulary entry is a ``<pad>`` it drops. Our models start from the embedding of their
  start token and keep every token, so the loader is run with those two steps left out (``_OurConventions``);
  everything else (weights, norms, positions, the output bias) is the converter's own.
- "ours int8 (dynamic)" is the same int8 model with ``QuantizedLinear(backend="dynamic")``: inputs are quantized
  per call too and multiplied in integers (fbgemm), as CTranslate2's int8 does.
- "ours bf16" is the float model decoding in bfloat16 (``load_seq2seq(..., dtype="bfloat16")``, ``--dtype
  bfloat16``): fast where the CPU multiplies bfloat16 in hardware (AMX), slow elsewhere (``--skip bf16``).
- Every system decodes the same batches of ``--batch-size`` sentences (sorted by length, as ``generate`` does),
  4 beams, length penalty 1, the same ``--threads``; systems are interleaved batch by batch so that all meet the
  same load. Printed: sentences/s, sacreBLEU (13a, cased) against the references, the share of outputs identical
  to ours in fp32 (beam ties can differ), and each speed as a ratio to ours in fp32.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from multihead.generation import GenerationConfig
from multihead.inference_dtype import cast_for_inference
from multihead.quantize import quantize_model
from multihead.tasks.seq2seq_eval import Seq2SeqModel, load_seq2seq
from multihead.text_metrics import bleu

Translate = Callable[[list[str], list[list[int]]], list[str]]


@dataclass
class System:
    """One column of the table: how to translate a batch, and what it took."""

    name: str
    translate: Translate
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"machine: {cpu}, {os.cpu_count()} CPUs, {threads} threads; torch {torch.__version__}, python "
            f"{platform.python_version()}; load average {load}")


def read_pairs(args: argparse.Namespace, model: Seq2SeqModel) -> tuple[list[str], list[str]]:
    """Sources and references: the files given, or the model's own test split."""
    if args.source:
        from multihead.data import read_parallel

        pairs = list(read_parallel(args.source, args.references))
    else:
        from multihead.experiment import recorded_split
        from multihead.tasks.seq2seq import load_pairs

        pairs = recorded_split(model.config, "test", load_pairs, where=args.model_dir)
    pairs = pairs[:args.limit] if args.limit else pairs
    return [pair.text for pair in pairs], [pair.label or "" for pair in pairs]


def ours(model: Seq2SeqModel, config: GenerationConfig) -> Translate:
    from multihead.generation import generate

    def translate(texts: list[str], sources: list[list[int]]) -> list[str]:
        with torch.inference_mode():
            results = generate(model.model, sources, config, decode=model.target_tokenizer.decode,
                               batch_size=len(sources))
        return [hypotheses[0].text or "" for hypotheses in results]

    return translate


def onnx_runtime(model_dir: str, work: Path, onnx_dir: str | None, config: GenerationConfig,
                 threads: int) -> Translate:
    from multihead.export import export_onnx, generate_onnx, load_onnx_translator

    folder = Path(onnx_dir) if onnx_dir else export_onnx(model_dir, work / "onnx")
    translator = load_onnx_translator(folder, threads=threads)

    def translate(texts: list[str], sources: list[list[int]]) -> list[str]:
        results = generate_onnx(translator.model, sources, config, decode=translator._decode,
                                batch_size=len(sources))
        return [hypotheses[0].text or "" for hypotheses in results]

    return translate


def marian_folder(model: Seq2SeqModel, work: Path) -> Path:
    """Our model as a Hugging Face Marian folder whose decoding starts from our start token."""
    from multihead.interop import save_hf

    target = model.target_tokenizer
    base = {"model_type": "marian", "decoder_start_token_id": target.bos_id, "bos_token_id": target.bos_id,
            "eos_token_id": target.eos_id, "pad_token_id": target.pad_id, "forced_eos_token_id": None}
    return save_hf(model.model, work / "marian", tokenizer=model.source_tokenizer, hf_config=base)


def ctranslate2_systems(model: Seq2SeqModel, marian: Path, work: Path, config: GenerationConfig,
                        threads: int) -> list[System]:
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from ctranslate2.converters import transformers as loaders

    class _OurConventions(loaders.MarianMTLoader):
        """Marian's loader without its two Marian-only steps: the zero start vector and the dropped last token."""

        def get_model_spec(self, hf_model: Any) -> Any:
            hf_model.config.normalize_before = False
            hf_model.config.normalize_embedding = False
            return loaders.BartLoader.get_model_spec(self, hf_model)

        def set_decoder(self, spec: Any, decoder: Any) -> None:
            loaders.BartLoader.set_decoder(self, spec, decoder)

        def get_vocabulary(self, hf_model: Any, tokenizer: Any) -> list[str]:
            return loaders.BartLoader.get_vocabulary(self, hf_model, tokenizer)

        def set_config(self, spec_config: Any, hf_model: Any, tokenizer: Any) -> None:
            loaders.BartLoader.set_config(self, spec_config, hf_model, tokenizer)

    original = loaders._MODEL_LOADERS["MarianConfig"]
    loaders._MODEL_LOADERS["MarianConfig"] = _OurConventions()
    try:
        for precision in ("float32", "int8"):
            TransformersConverter(str(marian)).convert(str(work / f"ct2-{precision}"),
                                                       quantization=None if precision == "float32" else "int8",
                                                       force=True)
    finally:
        loaders._MODEL_LOADERS["MarianConfig"] = original
    source, target = model.source_tokenizer.backend, model.target_tokenizer

    def system(precision: str) -> System:
        translator = ctranslate2.Translator(str(work / f"ct2-{precision}"), device="cpu", compute_type=precision,
                                            intra_threads=threads, inter_threads=1)

        def translate(texts: list[str], sources: list[list[int]]) -> list[str]:
            tokens = [[source.id_to_token(token) for token in row] for row in sources]
            results = translator.translate_batch(tokens, beam_size=config.num_beams,
                                                 length_penalty=config.length_penalty,
                                                 max_decoding_length=config.max_new_tokens, max_batch_size=len(tokens))
            return [target.decode([source.token_to_id(piece) for piece in result.hypotheses[0]])
                    for result in results]

        return System(f"CTranslate2 {'fp32' if precision == 'float32' else 'int8'}", translate)

    return [system("float32"), system("int8")]


def transformers_system(model: Seq2SeqModel, marian: Path, config: GenerationConfig) -> System:
    from transformers import MarianMTModel

    hf = MarianMTModel.from_pretrained(str(marian)).eval()
    target = model.target_tokenizer

    def translate(texts: list[str], sources: list[list[int]]) -> list[str]:
        width = max(len(row) for row in sources)
        ids = torch.tensor([row + [target.pad_id] * (width - len(row)) for row in sources])  # (B, S), right-padded
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=ids != target.pad_id, num_beams=config.num_beams,
                              max_new_tokens=config.max_new_tokens, length_penalty=config.length_penalty,
                              early_stopping=True, do_sample=False, decoder_start_token_id=target.bos_id,
                              eos_token_id=target.eos_id, pad_token_id=target.pad_id)
        texts_out = []
        for row in out.tolist():
            tokens = row[1:]
            if target.eos_id in tokens:
                tokens = tokens[:tokens.index(target.eos_id)]
            texts_out.append(target.decode(tokens))
        return texts_out

    return System("transformers generate", translate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a translation model directory (e.g. runs/translate-multi30k/best)")
    parser.add_argument("--source", help="source sentences, one a line (default: the model's test split)")
    parser.add_argument("--references", help="reference translations, line-aligned with --source")
    parser.add_argument("--limit", type=int, help="only the first N sentences")
    parser.add_argument("--threads", type=int, default=1, help="threads of every system (default 1)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-beams", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, help="default: the model's max_target_length")
    parser.add_argument("--onnx-dir", help="an existing ONNX export of MODEL_DIR (skips exporting)")
    parser.add_argument("--work", help="folder for the exported copies (default: a temporary folder)")
    parser.add_argument("--skip", action="append", default=[], choices=["bf16", "int8", "onnx", "ctranslate2",
                                                                                "transformers"])
    args = parser.parse_args(argv)
    if bool(args.source) != bool(args.references):
        parser.error("--source and --references go together")
    torch.set_num_threads(args.threads)
    model = load_seq2seq(args.model_dir)
    config = model.generation_config(num_beams=args.num_beams, length_penalty=1.0,
                                     max_new_tokens=args.max_new_tokens)
    texts, references = read_pairs(args, model)
    work = Path(args.work or tempfile.mkdtemp(prefix="translate-speed-"))
    print(machine(args.threads))
    print(f"model {args.model_dir}: {sum(p.numel() for p in model.model.parameters()) / 1e6:.1f}M parameters; "
          f"{len(texts)} sentences, batch {args.batch_size}, {config.num_beams} beams, length penalty 1, at most "
          f"{config.max_new_tokens} new tokens")
    systems = [System("ours fp32", ours(model, config))]
    if "bf16" not in args.skip:
        half = copy.copy(model)
        half.model = cast_for_inference(copy.deepcopy(model.model), "bfloat16", where=args.model_dir)
        systems.append(System("ours bf16", ours(half, config)))
    if "int8" not in args.skip:
        int8 = copy.copy(model)
        int8.model = quantize_model(copy.deepcopy(model.model), bits=8)
        systems.append(System("ours int8 (weight-only)", ours(int8, config)))
        dynamic = copy.copy(model)
        dynamic.model = quantize_model(copy.deepcopy(model.model), bits=8, backend="dynamic")
        systems.append(System("ours int8 (dynamic)", ours(dynamic, config)))
    if "onnx" not in args.skip:
        systems.append(System("onnxruntime fp32", onnx_runtime(args.model_dir, work, args.onnx_dir, config,
                                                               args.threads)))
    notes = []
    marian = None
    if not {"ctranslate2", "transformers"} <= set(args.skip):
        try:
            marian = marian_folder(model, work)
        except ValueError as error:
            notes.append(f"CTranslate2 and transformers skipped: the model has no Marian layout ({error})")
    if marian is not None and "ctranslate2" not in args.skip:
        try:
            systems += ctranslate2_systems(model, marian, work, config, args.threads)
        except ModuleNotFoundError:
            notes.append("CTranslate2 skipped: pip install ctranslate2")
    if marian is not None and "transformers" not in args.skip:
        systems.append(transformers_system(model, marian, config))
    sources = model.encode_sources(texts)
    order = sorted(range(len(texts)), key=lambda index: len(sources[index]), reverse=True)
    outputs: dict[str, list[str]] = {system.name: [""] * len(texts) for system in systems}
    warm = order[:min(len(order), args.batch_size)]
    for system in systems:  # warm-up: first-call costs (allocations, lazy init) stay out of the timing
        system.translate([texts[i] for i in warm[:2]], [sources[i] for i in warm[:2]])
    started = time.perf_counter()
    for start in range(0, len(order), args.batch_size):
        chunk = order[start:start + args.batch_size]
        for system in systems:
            begin = time.perf_counter()
            translated = system.translate([texts[i] for i in chunk], [sources[i] for i in chunk])
            system.seconds += time.perf_counter() - begin
            for index, text in zip(chunk, translated, strict=True):
                outputs[system.name][index] = text
        print(f"  {min(start + args.batch_size, len(order))}/{len(order)} sentences", file=sys.stderr)
    reference_outputs, reference_rate = outputs["ours fp32"], len(texts) / systems[0].seconds
    print(f"{'system':<26}{'sentences/s':>12}{'BLEU':>8}{'same as ours fp32':>20}{'speed vs ours fp32':>20}")
    for system in systems:
        rate = len(texts) / system.seconds
        same = sum(a == b for a, b in zip(outputs[system.name], reference_outputs, strict=True))
        score = bleu(outputs[system.name], references).score
        print(f"{system.name:<26}{rate:>12.2f}{score:>8.2f}{f'{same}/{len(texts)}':>20}"
              f"{rate / reference_rate:>19.2f}x")
    for note in notes:
        print(note)
    print(f"total {time.perf_counter() - started:.0f} s of timed decoding; {machine(args.threads).split('; ')[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
