"""``attention_for_text``: the ``AttentionMaps`` of one text read by a saved model directory.

- classifier (or any encoder): one forward pass over the text; the title names the predicted label.
- language model: one forward pass over the prompt, or, with ``max_new_tokens``, the continuation
  captured during generation.
- translation / summarisation: the model's own decoding (beam search by default) with attention
  captured during generation, following the chosen beam; the decoder rows are BOS and every output
  token fed back (the stop token is predicted, never fed). ``teacher_forced=True`` instead runs one
  forward pass over BOS + the decoded output (tests check that both give the same weights).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from multihead.errors import CheckpointError, ConfigError
from multihead.inspect.capture import Kind, Site, capture_attention
from multihead.inspect.decoding import generate_with_attention, teacher_forced_attention
from multihead.inspect.maps import AttentionMaps, maps_from_capture
from multihead.tokenizers import Tokenizer

__all__ = ["attention_for_text", "display_tokens"]


def display_tokens(tokenizer: Tokenizer, ids: Iterable[int]) -> tuple[list[str], list[bool]]:
    """Readable token strings (SentencePiece's ``▁`` dropped) and which tokens are special."""
    special_ids = {tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.bos_id, tokenizer.eos_id} - {None}
    tokens, special = [], []
    for token_id in ids:
        text = tokenizer.id_to_token(int(token_id)) or f"<{token_id}>"
        text = text.replace("\u2581", "").replace("\u0120", "") or text
        tokens.append(text)
        special.append(int(token_id) in special_ids)
    return tokens, special


NO_MULTI_HEAD_ATTENTION = ("TextCNN", "BiLSTMClassifier", "RNNEncoderDecoder", "LSTMLanguageModel")


def attention_for_text(
    model_dir: str | Path,
    text: str,
    *,
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    kinds: Iterable[Kind] = ("self", "cross"),
    num_beams: int | None = None,
    max_new_tokens: int | None = None,
    teacher_forced: bool = False,
) -> AttentionMaps:
    """Capture the attention of the chosen layers and heads while the model in ``model_dir`` reads ``text``.

    Args:
        num_beams: beams for a translation or summarisation model (default the model's decoding, 4) or for
            a language model's continuation (default 1).
        max_new_tokens: output length limit (translation: the model's default; language model: 0 = the
            prompt only).
        teacher_forced: for generated outputs, one forward pass over the output instead of capture during
            generation.
    """
    if str(model_dir).startswith("package:") or Path(model_dir).suffix == ".gguf":
        architecture = "DecoderLM"  # a llama.cpp file (or a package shipping one): a language model
    else:
        architecture = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("architecture")
    options = {"layers": None if layers is None else list(layers), "heads": None if heads is None else list(heads),
               "kinds": tuple(kinds)}
    if architecture == "ClassifierEnsemble":
        member = Path(model_dir).parent / "members" / "0" / "best"
        raise ConfigError(f"{model_dir}: an ensemble of classifiers; inspect one of its members, e.g. {member}")
    if architecture in NO_MULTI_HEAD_ATTENTION:
        raise ConfigError(f"{model_dir}: a {architecture} baseline has no multi-head attention to inspect")
    if architecture == "EncoderDecoder":
        return _seq2seq(model_dir, text, options, num_beams, max_new_tokens, teacher_forced)
    if architecture == "DecoderLM":
        return _language_model(model_dir, text, options, num_beams, max_new_tokens or 0, teacher_forced)
    return _encoder(model_dir, text, options)


def _encoder(model_dir: str | Path, text: str, options: dict) -> AttentionMaps:
    from multihead.model_dir import load_model_dir

    loaded = load_model_dir(model_dir)
    if loaded.tokenizer is None:
        raise CheckpointError(f"{model_dir}: no tokenizer.json; expected the tokenizer the model was trained with")
    model = loaded.model.eval()
    limit = int(loaded.config.get("experiment", {}).get("data", {}).get("max_length", model.config.max_length))
    ids = loaded.tokenizer.encode(text, max_length=limit)
    with torch.no_grad(), capture_attention(model, **options) as captured:
        output = model(torch.tensor([ids]))
    title = text
    if loaded.labels is not None and isinstance(output, torch.Tensor) and output.dim() == 2:
        probabilities = output.float().softmax(dim=-1)[0]
        best = int(probabilities.argmax())
        title = f"{text}  ->  {loaded.labels.names[best]} ({float(probabilities[best]):.2f})"
    tokens, special = display_tokens(loaded.tokenizer, ids)
    stack = next(site.stack for site in captured.sites)
    return maps_from_capture(captured, {stack: tokens}, {stack: special}, title=title)


def _seq2seq(model_dir: str | Path, text: str, options: dict, num_beams: int | None, max_new_tokens: int | None,
             teacher_forced: bool) -> AttentionMaps:
    from multihead.tasks.seq2seq_eval import load_seq2seq

    loaded = load_seq2seq(model_dir)
    model = loaded.model.eval()
    source = loaded.encode_sources([text])[0]
    config = loaded.generation_config(num_beams=num_beams, max_new_tokens=max_new_tokens)
    decoded = generate_with_attention(model, source, config, decode=loaded.target_tokenizer.decode, **options)
    sequence = decoded.sequence
    weights = decoded.weights
    if teacher_forced:
        sequence = [config.bos_id, *decoded.hypothesis.tokens]
        weights = teacher_forced_attention(model, source, sequence, **options)
    source_tokens, source_special = display_tokens(loaded.source_tokenizer, source)
    target_tokens, target_special = display_tokens(loaded.target_tokenizer, sequence)
    answer = loaded.target_tokenizer.decode(decoded.hypothesis.tokens)
    heads = _heads(options, weights)
    return AttentionMaps(weights=weights, tokens={"encoder": source_tokens, "decoder": target_tokens},
                         special={"encoder": source_special, "decoder": target_special}, heads=heads,
                         title=f"{text}  ->  {answer}", extra={"output": answer})


def _language_model(model_dir: str | Path, text: str, options: dict, num_beams: int | None, max_new_tokens: int,
                    teacher_forced: bool) -> AttentionMaps:
    from multihead.tasks.text_generator import load_text_generator

    loaded = load_text_generator(model_dir)
    model = loaded.model.eval()
    prompt = loaded.encode_prompt(text)
    output = ""
    if max_new_tokens > 0:
        config = loaded.generation_config(num_beams=num_beams, max_new_tokens=max_new_tokens)
        decoded = generate_with_attention(model, prompt, config, decode=loaded.tokenizer.decode, **options)
        sequence, weights = decoded.sequence, decoded.weights
        output = loaded.tokenizer.decode(decoded.hypothesis.tokens)
        if teacher_forced:
            sequence = [*prompt, *decoded.hypothesis.tokens]
            weights = teacher_forced_attention(model, [], sequence, **options)
    else:
        sequence = prompt
        weights = teacher_forced_attention(model, [], sequence, **options)
    tokens, special = display_tokens(loaded.tokenizer, sequence)
    title = text + (f"  ->  {output}" if output else "")
    return AttentionMaps(weights=weights, tokens={"decoder": tokens}, special={"decoder": special},
                         heads=_heads(options, weights), title=title, extra={"output": output})


def _heads(options: dict, weights: dict[Site, torch.Tensor]) -> tuple[int, ...]:
    if options["heads"] is not None:
        return tuple(options["heads"])
    return tuple(range(next(iter(weights.values())).shape[0]))
