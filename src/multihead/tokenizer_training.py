"""Training a tokenizer with Hugging Face ``tokenizers``, deterministically: the same texts and options give the
same ``tokenizer.json`` in every process.

The library's BPE and WordPiece trainers give ids to continuation pieces (``##e``, ``e</w>``) in the order of a
hash map whose seed changes with each process; merges of equal count are then ranked by those ids, so two runs
keep different pieces at the end of the vocabulary and number them differently (6,630 of the demo's 8,000 ids
differed). Reserving every continuation piece up front, in code-point order, fixes those ids and with them the
whole training. The Unigram trainer sums its scores in an order that varies by a few 1e-14; rounding the scores
and ordering the pieces by score makes its vocabulary repeatable too.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

from multihead.errors import ConfigError
from multihead.limits import MAX_VOCAB, check_bound

__all__ = ["TOKENIZER_KINDS", "UNK_NAMES", "build_trainer", "checked_texts", "has_text", "pick", "train_backend",
           "untrained_backend", "validate_options"]

TOKENIZER_KINDS: tuple[str, ...] = ("bpe", "byte_bpe", "wordpiece", "unigram", "char", "word")
UNK_NAMES = ("[UNK]", "<unk>")
BYTE_ALPHABET = 256
_SCORE_DECIMALS = 9
_REQUIRED_CHARACTER_STEP = 1e-4  # the Unigram trainer's score step between the characters it must keep


def train_backend(kind: str, *, texts: Callable[[], Iterable[str]], vocab_size: int, specials: tuple[str, ...],
                  lowercase: bool, min_frequency: int) -> tokenizers.Tokenizer:
    """A trained backend of ``kind``, the same in every process; ``texts()`` yields the corpus (called twice for
    BPE and WordPiece: once for the alphabet, once to train)."""
    backend = untrained_backend(kind, specials, lowercase=lowercase)
    limit = max((vocab_size - len(specials)) // 2, 1)
    seeds = _continuation_pieces(kind, backend, texts(), limit_alphabet=limit)
    backend.train_from_iterator(texts(), build_trainer(kind, vocab_size, specials, min_frequency, seeds=seeds))
    return _canonical(backend, kind, seeds)


def _continuation_pieces(kind: str, backend: tokenizers.Tokenizer, texts: Iterable[str], *,
                         limit_alphabet: int) -> list[str]:
    """The pieces BPE (``e</w>``, a word's last character) or WordPiece (``##e``, any character after a word's
    first) will make of the kept alphabet, in code-point order; none for other kinds."""
    if kind not in ("bpe", "wordpiece"):
        return []
    counts: Counter[str] = Counter()
    tails: set[str] = set()
    for text in texts:
        normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized):
            counts.update(word)
            tails.update(word[-1:] if kind == "bpe" else word[1:])
    kept = {char for char, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit_alphabet]}
    chars = sorted(tails & kept)
    return [f"{char}</w>" for char in chars] if kind == "bpe" else [f"##{char}" for char in chars]


def _canonical(backend: tokenizers.Tokenizer, kind: str, seeds: Sequence[str]) -> tokenizers.Tokenizer:
    """The trained backend without the reserved pieces among its special tokens, and (Unigram) with rounded scores
    in a fixed order."""
    data = json.loads(backend.to_str())
    reserved = set(seeds)
    data["added_tokens"] = [token for token in data["added_tokens"] if token["content"] not in reserved]
    if kind == "unigram":
        model = data["model"]
        specials = {token["content"] for token in data["added_tokens"]}
        rounded = [(piece, round(score, _SCORE_DECIMALS)) for piece, score in model["vocab"]]
        pieces = _sorted_required_characters(rounded)
        head = [pair for pair in pieces if pair[0] in specials]
        tail = sorted((pair for pair in pieces if pair[0] not in specials), key=lambda pair: (-pair[1], pair[0]))
        unk = None if model.get("unk_id") is None else model["vocab"][model["unk_id"]][0]
        model["vocab"] = [list(pair) for pair in head + tail]
        model["unk_id"] = None if unk is None else [pair[0] for pair in head + tail].index(unk)
        for token in data["added_tokens"]:
            token["id"] = [pair[0] for pair in head + tail].index(token["content"])
    return tokenizers.Tokenizer.from_str(json.dumps(data))


def _sorted_required_characters(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The Unigram trainer appends the characters it must keep, with scores falling by a fixed step, in hash-map
    order (near the end of its list), the last two tied; give that run its scores in code-point order instead."""

    def stepped(i: int) -> bool:  # pieces i and i + 1 are characters one step apart
        (first, high), (second, low) = pieces[i], pieces[i + 1]
        return len(first) == 1 and len(second) == 1 and abs(high - low - _REQUIRED_CHARACTER_STEP) < 1e-7

    last = next((i + 1 for i in range(len(pieces) - 2, -1, -1) if stepped(i)), None)
    if last is None:
        return pieces
    first = last - 1
    while first > 0 and stepped(first - 1):
        first -= 1
    while last + 1 < len(pieces) and len(pieces[last + 1][0]) == 1 and pieces[last + 1][1] == pieces[last][1]:
        last += 1  # the trainer gives its last character the score of the one before
    run = pieces[first:last + 1]
    ordered = zip(sorted(piece for piece, _ in run), [score for _, score in run], strict=True)
    return pieces[:first] + list(ordered) + pieces[last + 1:]


def lines_of(paths: Sequence[str]) -> Iterator[str]:
    """Every line of UTF-8 text files, newline kept (as the library's own file reader does)."""
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            yield from handle


def validate_options(kind: str, vocab_size: int, special_tokens: Sequence[str], min_frequency: int) -> tuple[str, ...]:
    """Check the training options; return the special tokens as a tuple."""
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(f"kind must be one of {TOKENIZER_KINDS}, got {kind!r:.80}")
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a sequence of strings, got the single str {special_tokens!r}")
    specials = tuple(special_tokens)
    for token in specials:
        if not isinstance(token, str) or not token:
            raise ConfigError(f"special tokens must be non-empty strings, got {token!r} in {specials}")
    if len(set(specials)) != len(specials):
        raise ConfigError(f"special_tokens must not repeat a token, got {specials}")
    if kind != "byte_bpe" and pick(specials, UNK_NAMES) is None:
        raise ConfigError(
            f"kind {kind!r} needs an unknown token ({' or '.join(UNK_NAMES)}) in special_tokens, got {specials}"
        )
    smallest = len(specials) + (BYTE_ALPHABET if kind == "byte_bpe" else 1)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < smallest:
        raise ConfigError(
            f"vocab_size must be an int >= {smallest} for kind {kind!r} with {len(specials)} special tokens, "
            f"got {vocab_size!r}"
        )
    check_bound("vocab_size", vocab_size, MAX_VOCAB, hint="the trainer reserves memory for every token asked for")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 0:
        raise ConfigError(f"min_frequency must be an int >= 0, got {min_frequency!r}")
    return specials


def pick(tokens: Sequence[str], names: Sequence[str]) -> str | None:
    return next((name for name in names if name in tokens), None)


def untrained_backend(kind: str, specials: tuple[str, ...], *, lowercase: bool) -> tokenizers.Tokenizer:
    unk = pick(specials, UNK_NAMES)
    words = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    if kind == "bpe":  # Sennrich-style: subwords end with "</w>", so decoding knows where words end
        backend = tokenizers.Tokenizer(models.BPE(unk_token=unk, end_of_word_suffix="</w>"))
        backend.pre_tokenizer = words
        backend.decoder = decoders.BPEDecoder(suffix="</w>")
    elif kind == "byte_bpe":  # GPT-2 style, no prefix space, so decode(encode(x)) == x
        backend = tokenizers.Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
    elif kind == "wordpiece":  # no decoder cleanup: it would rewrite " do not" as " don't"
        backend = tokenizers.Tokenizer(models.WordPiece(unk_token=unk, continuing_subword_prefix="##"))
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    elif kind == "unigram":
        backend = tokenizers.Tokenizer(models.Unigram())
        backend.pre_tokenizer = pre_tokenizers.Metaspace()
        backend.decoder = decoders.Metaspace()
    elif kind == "char":  # every code point, whitespace included, is its own token
        backend = tokenizers.Tokenizer(models.WordLevel(unk_token=unk))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        backend.decoder = decoders.Fuse()
    else:  # word: decoding joins words with single spaces
        backend = tokenizers.Tokenizer(models.WordLevel(unk_token=unk))
        backend.pre_tokenizer = words
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    return backend


def build_trainer(kind: str, vocab_size: int, specials: tuple[str, ...], min_frequency: int, *,
                  seeds: Sequence[str] = ()) -> trainers.Trainer:
    """The ``tokenizers`` trainer of ``kind``; ``seeds`` are reserved first, after the special tokens
    (see :func:`train_backend`)."""
    common: dict[str, Any] = {"vocab_size": vocab_size, "special_tokens": [*specials, *seeds], "show_progress": False}
    # A character may enter the BPE/WordPiece alphabet twice ("e" and "e</w>", "e" and "##e"); halving
    # the alphabet keeps the trained vocabulary within vocab_size.
    limit_alphabet = max((vocab_size - len(specials)) // 2, 1)
    counted: dict[str, Any] = {**common, "min_frequency": min_frequency}
    if kind == "bpe":
        return trainers.BpeTrainer(**counted, limit_alphabet=limit_alphabet, end_of_word_suffix="</w>")
    if kind == "byte_bpe":
        return trainers.BpeTrainer(**counted, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    if kind == "wordpiece":
        return trainers.WordPieceTrainer(**counted, limit_alphabet=limit_alphabet, continuing_subword_prefix="##")
    if kind == "unigram":
        return trainers.UnigramTrainer(**common, unk_token=pick(specials, UNK_NAMES))
    return trainers.WordLevelTrainer(**counted)


def checked_texts(texts: Iterable[str], counter: list[int]) -> Iterator[str]:
    """Yield ``texts``, checking each is a str and counting the non-blank ones into ``counter[0]``."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        if text.strip():
            counter[0] += 1
        yield text


def has_text(path: Path, chunk_chars: int = 1 << 16) -> bool:
    """Whether ``path`` holds any non-whitespace character (reads only until the first one)."""
    try:
        with path.open(encoding="utf-8") as handle:
            while chunk := handle.read(chunk_chars):
                if not chunk.isspace():
                    return True
    except UnicodeDecodeError as exc:
        raise ConfigError(f"training file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return False
