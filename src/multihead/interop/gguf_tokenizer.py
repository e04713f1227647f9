"""The tokenizer a GGUF file describes, rebuilt as a Hugging Face ``tokenizers`` byte-level BPE.

llama.cpp keeps the vocabulary (``tokenizer.ggml.tokens``, already spelled in GPT-2's byte alphabet), the merges,
each token's type (normal, control, user-defined, ...), the special token ids and the name of the pre-tokenizer
(``tokenizer.ggml.pre``: the regular expression that splits text before merging). This module maps those onto
``tokenizers``' pieces: a BPE model, the pre-tokenizer llama.cpp uses for that name, byte-level decoding, control
tokens as special added tokens and user-defined ones as plain added tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors

from multihead.errors import CheckpointError
from multihead.tokenizers import Tokenizer

__all__ = ["PRE_TOKENIZERS", "tokenizer_from_gguf"]

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp's token types
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
           r"|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
PRE_TOKENIZERS: dict[str, str] = {
    **dict.fromkeys(("default", "gpt2", "gpt-2", "olmo", "mpt"), "gpt2"),
    **dict.fromkeys(("smollm", "starcoder", "refact", "codeshell", "command-r"), "digits"),
    **dict.fromkeys(("llama-bpe", "llama3", "llama-v3", "smaug-bpe", "dbrx", "falcon3"), "llama3"),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen"), "qwen2"),
}
"""``tokenizer.ggml.pre`` -> how text is split before merging: ``gpt2`` (GPT-2's regular expression), ``digits``
(every digit apart, then GPT-2's expression: StarCoder and SmolLM), ``llama3`` or ``qwen2`` (their expressions).
A name not listed gets GPT-2's expression, as ``transformers`` gives it."""


def tokenizer_from_gguf(fields: Mapping[str, Any], *, origin: str) -> Tokenizer:
    """The ``Tokenizer`` of a GGUF file's ``tokenizer.*`` metadata.

    Args:
        fields: the file's metadata by key (``tokenizer.ggml.tokens`` and ``merges`` as lists of strings).
        origin: the file, for error messages.

    Raises:
        CheckpointError: no vocabulary, a tokenizer model other than byte-level BPE (``gpt2``), merges that name
            unknown tokens, or special token ids outside the vocabulary.
    """
    kind = fields.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise CheckpointError(f"{origin}: tokenizer.ggml.model {kind!r} is not supported; expected 'gpt2' "
                              f"(byte-level BPE)")
    tokens = _strings(fields, "tokenizer.ggml.tokens", origin=origin)
    merges = _strings(fields, "tokenizer.ggml.merges", origin=origin)
    types = list(fields.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    if len(types) != len(tokens):
        raise CheckpointError(f"{origin}: tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} "
                              f"tokens; expected one type per token")
    vocab = {token: index for index, token in enumerate(tokens)}
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    bad = next((merge for merge, pair in zip(merges, pairs, strict=True)
                if len(pair) != 2 or pair[0] not in vocab or pair[1] not in vocab), None)
    if bad is not None:
        raise CheckpointError(f"{origin}: merge {bad!r} does not join two tokens of the vocabulary")
    try:
        backend = tokenizers.Tokenizer(models.BPE(vocab, pairs, fuse_unk=False, byte_fallback=False))
    except Exception as error:  # the backend raises bare Exception
        raise CheckpointError(f"{origin}: the vocabulary and merges do not form a BPE model ({error})") from error
    backend.pre_tokenizer = _pre_tokenizer(str(fields.get("tokenizer.ggml.pre", "default")))
    backend.decoder = decoders.ByteLevel()
    roles = special_token_roles(fields, tokens, origin=origin)
    role_tokens = set(roles.values())
    backend.add_special_tokens([AddedToken(token, normalized=False, special=True) for token, kind in zip(tokens, types,
                                strict=True) if kind == _CONTROL or token in role_tokens])
    backend.add_tokens([AddedToken(token, normalized=False, special=False)
                        for token, kind in zip(tokens, types, strict=True) if kind == _USER_DEFINED])
    backend.post_processor = _post_processor(fields, {role: (token, vocab[token]) for role, token in roles.items()})
    return Tokenizer(backend, special_tokens=roles, chat_template=_chat_template(fields))


def special_token_roles(fields: Mapping[str, Any], tokens: Sequence[str], *, origin: str) -> dict[str, str]:
    """``{"bos": token, "eos": token, "unk": token, "pad": token}`` from the file's special token ids (roles the
    file does not give are left out)."""
    roles: dict[str, str] = {}
    for role, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")):
        value = fields.get(f"tokenizer.ggml.{key}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(tokens):
            raise CheckpointError(f"{origin}: tokenizer.ggml.{key} = {value!r:.40} is outside the vocabulary "
                                  f"(0..{len(tokens) - 1})")
        roles[role] = tokens[value]
    return roles


def _strings(fields: Mapping[str, Any], key: str, *, origin: str) -> list[str]:
    values = fields.get(key)
    if not isinstance(values, Sequence) or isinstance(values, str) or not values \
            or not all(isinstance(value, str) for value in values):
        raise CheckpointError(f"{origin}: {key} is missing or not a list of strings; expected the tokenizer's "
                              f"{key.rsplit('.', 1)[-1]}")
    return list(values)


def _pre_tokenizer(name: str) -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer llama.cpp applies for ``tokenizer.ggml.pre`` = ``name``."""
    kind = PRE_TOKENIZERS.get(name, "gpt2")
    if kind in ("llama3", "qwen2"):
        split = pre_tokenizers.Split(Regex(_LLAMA3 if kind == "llama3" else _QWEN2), behavior="isolated")
        return pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if kind == "digits":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    return byte_level


def _post_processor(fields: Mapping[str, Any], roles: Mapping[str, tuple[str, int]]) -> processors.PostProcessor | None:
    """BOS and EOS around every text where the file asks for them (``add_bos_token`` / ``add_eos_token``);
    ``roles``: role -> (token, id)."""
    before = [roles["bos"][0]] if fields.get("tokenizer.ggml.add_bos_token") and "bos" in roles else []
    after = [roles["eos"][0]] if fields.get("tokenizer.ggml.add_eos_token") and "eos" in roles else []
    if not before and not after:
        return None
    single = " ".join([*before, "$A", *after])
    pair = " ".join([single, *before, "$B:1", *(f"{token}:1" for token in after)])
    specials = sorted({roles[role] for role in ("bos", "eos") if role in roles})
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def _chat_template(fields: Mapping[str, Any]) -> str | None:
    template = fields.get("tokenizer.chat_template")
    return template if isinstance(template, str) and template.strip() else None
