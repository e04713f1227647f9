"""Train, load and save tokenizers: a thin typed wrapper over Hugging Face ``tokenizers``.

Every algorithm (BPE, byte-level BPE, WordPiece, Unigram, character and word level) is the backend's;
this module only picks the pieces (model, normaliser, pre-tokenizer, decoder, post-processor) and
guards the edges. Loading reads JSON or ``vocab.txt`` only and never runs code.

Example:
    >>> tok = Tokenizer.train_from_texts(["a tiny corpus", "of two lines"], kind="char", vocab_size=30, min_frequency=1)
    >>> tok.encode("a tiny", max_length=4) == [tok.cls_id, tok.token_to_id("a"), tok.token_to_id(" "), tok.sep_id]
    True
    >>> tok.decode(tok.encode("a tiny"))
    'a tiny'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from multihead.atomic import write_text_atomic
from multihead.errors import CheckpointError, ConfigError
from multihead.limits import text_cap
from multihead.tokenizer_config import ROLES, read_tokenizer_config, tokenizer_config_values, write_tokenizer_config
from multihead.tokenizer_training import (
    TOKENIZER_KINDS,
    UNK_NAMES,
    checked_texts,
    has_text,
    lines_of,
    train_backend,
    validate_options,
)

__all__ = ["DEFAULT_SPECIAL_TOKENS", "TOKENIZER_KINDS", "MissingFileError", "Tokenizer"]

DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]")

_TOKENIZER_FILE = "tokenizer.json"
_VOCAB_FILE = "vocab.txt"
_BERT_SPECIALS = {"unk": "[UNK]", "sep": "[SEP]", "cls": "[CLS]", "pad": "[PAD]", "mask": "[MASK]"}
_ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>"),
    "unk": UNK_NAMES,
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "bos": ("[BOS]", "<s>", "<|endoftext|>"),
    "eos": ("[EOS]", "</s>", "<|endoftext|>"),
}


class MissingFileError(FileNotFoundError, ValueError):
    """A file the caller named does not exist (both a ``FileNotFoundError`` and a ``ValueError``)."""


class Tokenizer:
    """Text <-> token ids over a ``tokenizers.Tokenizer`` backend.

    Padding and batch truncation belong to the batcher, so a backend that arrives with padding or
    truncation enabled is copied and both are switched off; the caller's object is left untouched.
    ``max_length`` truncates per call without changing the backend, so one tokenizer is safe to
    share between threads.

    Args:
        backend: The Hugging Face tokenizer to wrap.
        kind: One of ``TOKENIZER_KINDS`` when known (set by ``train``), else ``None``.
        special_tokens: role (``bos``, ``eos``, ``unk``, ``pad``, ``cls``, ``sep``, ``mask``) -> token, for tokens
            whose role their name does not tell (a GGUF file's or ``tokenizer_config.json``'s); roles not given
            are found by name (``[BOS]``, ``<s>``, ...). Saved to and loaded from ``tokenizer_config.json``.
        chat_template: the Jinja chat template of a chat model (see :mod:`multihead.chat_template`), or ``None``;
            saved as ``tokenizer_config.json``'s ``chat_template``.
    """

    def __init__(
        self, backend: tokenizers.Tokenizer, *, kind: str | None = None,
        special_tokens: Mapping[str, str] | None = None, chat_template: str | None = None,
    ) -> None:  # fmt: skip
        if not isinstance(backend, tokenizers.Tokenizer):
            raise TypeError(f"backend must be a tokenizers.Tokenizer, got {type(backend).__name__}")
        if kind is not None and kind not in TOKENIZER_KINDS:
            raise ConfigError(f"kind must be one of {TOKENIZER_KINDS} or None, got {kind!r}")
        if backend.padding is not None or backend.truncation is not None:
            backend = tokenizers.Tokenizer.from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
        self._backend = backend
        self.kind = kind
        self.special_tokens: dict[str, str] = dict(special_tokens or {})
        for role, token in self.special_tokens.items():
            if role not in ROLES or backend.token_to_id(token) is None:
                raise ConfigError(f"special_tokens[{role!r}] = {token!r}: expected a role among {ROLES} and a token "
                                  f"of the vocabulary")
        if chat_template is not None and not isinstance(chat_template, str):
            raise TypeError(f"chat_template must be a str or None, got {type(chat_template).__name__}")
        self.chat_template = chat_template

    @classmethod
    def train(
        cls, files: Sequence[str | Path], *, kind: str, vocab_size: int,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS, lowercase: bool = False, min_frequency: int = 2,
    ) -> Tokenizer:  # fmt: skip
        """Train a new tokenizer on UTF-8 text files (one text a line).

        Special tokens get ids ``0 .. len(special_tokens) - 1`` in the order given. When ``[CLS]`` and
        ``[SEP]`` are among them, encoding adds ``[CLS] ... [SEP]``.

        Raises:
            ValueError: An unknown ``kind``, a ``vocab_size`` too small, or no text in ``files``.
            MissingFileError: A file that does not exist (a ``ValueError`` too).
        """
        if isinstance(files, str | Path):
            raise TypeError(f"files must be a sequence of paths, got the single path {str(files)!r}; wrap it in a list")
        paths = [str(file) for file in files]
        if not paths:
            raise ConfigError("files is empty; expected at least one text file to train on")
        for path in paths:
            if not Path(path).is_file():
                raise MissingFileError(f"training file {path!r} does not exist or is not a file")
        if not any(has_text(Path(path)) for path in paths):
            raise ConfigError(f"training files {paths} hold no text; expected non-empty UTF-8 text")
        return cls._train(
            lambda: lines_of(paths), kind=kind, vocab_size=vocab_size, special_tokens=special_tokens,
            lowercase=lowercase, min_frequency=min_frequency,
        )  # fmt: skip

    @classmethod
    def train_from_texts(
        cls, texts: Iterable[str], *, kind: str, vocab_size: int,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS, lowercase: bool = False, min_frequency: int = 2,
    ) -> Tokenizer:  # fmt: skip
        """Train a new tokenizer on an iterable of strings (streamed once); options as in ``train``."""
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, got a single str; wrap it in a list")

        counter = [0]
        corpus = list(checked_texts(texts, counter))  # read twice: for the alphabet, then to train
        if counter[0] == 0:
            raise ConfigError("texts holds no text; expected at least one non-blank string to train on")
        return cls._train(
            lambda: corpus, kind=kind, vocab_size=vocab_size, special_tokens=special_tokens, lowercase=lowercase,
            min_frequency=min_frequency,
        )  # fmt: skip

    @classmethod
    def _train(
        cls, texts: Callable[[], Iterable[str]], *, kind: str, vocab_size: int, special_tokens: Sequence[str],
        lowercase: bool, min_frequency: int,
    ) -> Tokenizer:  # fmt: skip
        """Validate the options, then train a backend on ``texts()`` (deterministically) and finish it."""
        specials = validate_options(kind, vocab_size, special_tokens, min_frequency)
        try:
            backend = train_backend(kind, texts=texts, vocab_size=vocab_size, specials=specials, lowercase=lowercase,
                                    min_frequency=min_frequency)
        except (TypeError, ValueError):
            raise
        except Exception as exc:  # the backend raises bare Exception
            raise ConfigError(f"training a {kind!r} tokenizer with vocab_size={vocab_size} failed: {exc}") from exc
        if (size := backend.get_vocab_size(with_added_tokens=True)) > vocab_size:
            raise ConfigError(
                f"vocab_size={vocab_size} is too small for a {kind!r} tokenizer on this corpus: its alphabet "
                f"alone needs {size} tokens; raise vocab_size"
            )
        if "[CLS]" in specials and "[SEP]" in specials:
            backend.post_processor = _cls_sep_template(backend, "[CLS]", "[SEP]")
        return cls(backend, kind=kind)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a ``tokenizer.json`` file, or a directory holding ``tokenizer.json`` or a BERT ``vocab.txt``.

        A directory with only ``vocab.txt`` becomes a BERT WordPiece tokenizer; ``do_lower_case`` (default
        ``True``) and the special token names come from ``tokenizer_config.json`` when present. Beside a
        ``tokenizer.json``, ``tokenizer_config.json`` gives the special tokens' roles and the chat template
        (``chat_template.jinja`` wins over its ``chat_template`` key).
        """
        path = Path(path)
        if path.is_dir():
            if (path / _TOKENIZER_FILE).is_file():
                return cls._with_config(_read_tokenizer_json(path / _TOKENIZER_FILE), path)
            if (path / _VOCAB_FILE).is_file():
                return cls(_read_bert_vocab(path / _VOCAB_FILE))
            raise MissingFileError(
                f"directory {str(path)!r} holds neither {_TOKENIZER_FILE} nor {_VOCAB_FILE}; expected a tokenizer"
            )
        if path.is_file():
            if path.suffix == ".txt":
                return cls(_read_bert_vocab(path))
            return cls._with_config(_read_tokenizer_json(path), path.parent)
        raise MissingFileError(
            f"tokenizer path {str(path)!r} does not exist; expected a {_TOKENIZER_FILE} file or a directory holding one"
        )

    @classmethod
    def _with_config(cls, backend: tokenizers.Tokenizer, directory: Path) -> Tokenizer:
        """``backend`` with the roles (those naming tokens it has) and chat template of ``directory``'s
        ``tokenizer_config.json`` and ``chat_template.jinja``."""
        roles, template = read_tokenizer_config(directory)
        known = {role: token for role, token in roles.items() if backend.token_to_id(token) is not None}
        return cls(backend, special_tokens=known, chat_template=template)

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` atomically and return its path; with ``special_tokens`` or a
        ``chat_template``, also a ``tokenizer_config.json`` beside it.

        ``path`` ending in ``.json`` (and not an existing directory) names the file; anything else is a
        directory, created if needed, that receives ``tokenizer.json``.
        """
        path = Path(path)
        target = path if path.suffix == ".json" and not path.is_dir() else path / _TOKENIZER_FILE
        write_text_atomic(target, self._backend.to_str(pretty=True))
        if self.special_tokens or self.chat_template is not None:
            write_tokenizer_config(target.parent, self.config_values())
        return target

    def config_values(self) -> dict[str, Any]:
        """The ``tokenizer_config.json`` keys of this tokenizer: ``<role>_token`` of the roles it was given and
        ``chat_template`` when it has one."""
        return tokenizer_config_values(self.special_tokens, self.chat_template)

    def role_tokens(self) -> dict[str, str]:
        """Role -> token of every special token role this tokenizer has, given or found by name."""
        return {role: token for role in ROLES
                if (token_id := self._role_id(role)) is not None and (token := self.id_to_token(token_id))}

    def encode(self, text: str, *, max_length: int | None = None, add_special_tokens: bool = True) -> list[int]:
        """Token ids of one text; ``max_length`` truncates the text and keeps the special tokens.

        With ``max_length``, only the first :func:`multihead.limits.text_cap` characters reach the backend
        (64 a token, plus 1,024): a 50 MB line costs what its head costs, not gigabytes of token offsets.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if max_length is None:
            return self._backend.encode(text, add_special_tokens=add_special_tokens).ids
        budget = self._budget(max_length, add_special_tokens)
        head = text[:text_cap(max_length)]
        return self._truncate(self._backend.encode(head, add_special_tokens=False), budget, add_special_tokens)

    def encode_batch(
        self, texts: Sequence[str], *, max_length: int | None = None, add_special_tokens: bool = True
    ) -> list[list[int]]:
        """``[encode(t) for t in texts]`` (each cut as ``encode`` cuts it), encoded in parallel by the backend."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got a single str; use encode()")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
        if max_length is None:
            return [e.ids for e in self._backend.encode_batch(texts, add_special_tokens=add_special_tokens)]
        budget = self._budget(max_length, add_special_tokens)
        cap = text_cap(max_length)
        encodings = self._backend.encode_batch([text[:cap] for text in texts], add_special_tokens=False)
        return [self._truncate(encoding, budget, add_special_tokens) for encoding in encodings]

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; raises ``ValueError`` for an id outside ``[0, vocab_size)``."""
        ids = [int(i) for i in ids]
        size = self.vocab_size
        for position, token_id in enumerate(ids):
            if not 0 <= token_id < size:
                raise ValueError(f"ids[{position}] = {token_id} is outside the vocabulary [0, {size})")
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def _budget(self, max_length: int, add_special_tokens: bool) -> int:
        added = self._backend.num_special_tokens_to_add(False) if add_special_tokens else 0
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < max(added, 1):
            raise ConfigError(
                f"max_length must be an int >= {max(added, 1)} (room for {added} special tokens), got "
                f"{max_length!r:.80}"
            )
        return max_length - added

    def _truncate(self, encoding: tokenizers.Encoding, budget: int, add_special_tokens: bool) -> list[int]:
        encoding.truncate(budget)
        return self._backend.post_process(encoding, add_special_tokens=add_special_tokens).ids

    def token_to_id(self, token: str) -> int | None:
        """Id of ``token``, or ``None`` when it is not in the vocabulary."""
        return self._backend.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        """Token of ``id``, or ``None`` when no token has that id."""
        return None if id < 0 else self._backend.id_to_token(id)

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The wrapped Hugging Face tokenizer."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        """Number of tokens, added and special tokens included."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int | None:
        """Id of ``[PAD]`` / ``<pad>``, or ``None``."""
        return self._role_id("pad")

    @property
    def unk_id(self) -> int | None:
        """Id of ``[UNK]`` / ``<unk>``, or ``None``."""
        return self._role_id("unk")

    @property
    def cls_id(self) -> int | None:
        """Id of ``[CLS]`` / ``<s>``, or ``None``."""
        return self._role_id("cls")

    @property
    def sep_id(self) -> int | None:
        """Id of ``[SEP]`` / ``</s>``, or ``None``."""
        return self._role_id("sep")

    @property
    def bos_id(self) -> int | None:
        """Id of ``[BOS]`` / ``<s>`` / ``<|endoftext|>``, or ``None``."""
        return self._role_id("bos")

    @property
    def eos_id(self) -> int | None:
        """Id of ``[EOS]`` / ``</s>`` / ``<|endoftext|>``, or ``None``."""
        return self._role_id("eos")

    def _role_id(self, role: str) -> int | None:
        if role in self.special_tokens:
            return self._backend.token_to_id(self.special_tokens[role])
        for name in _ROLE_NAMES.get(role, ()):
            token_id = self._backend.token_to_id(name)
            if token_id is not None:
                return token_id
        return None

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def _cls_sep_template(backend: tokenizers.Tokenizer, cls_token: str, sep_token: str) -> processors.TemplateProcessing:
    cls_id, sep_id = backend.token_to_id(cls_token), backend.token_to_id(sep_token)
    return processors.TemplateProcessing(
        single=f"{cls_token} $A {sep_token}",
        pair=f"{cls_token} $A {sep_token} $B:1 {sep_token}:1",
        special_tokens=[(cls_token, cls_id), (sep_token, sep_id)],
    )


def _read_tokenizer_json(file: Path) -> tokenizers.Tokenizer:
    try:
        return tokenizers.Tokenizer.from_file(str(file))
    except Exception as exc:  # the backend raises bare Exception
        raise CheckpointError(f"{str(file)!r} is not a valid {_TOKENIZER_FILE}: {str(exc)[:200]}") from exc


def _read_bert_vocab(vocab_file: Path) -> tokenizers.Tokenizer:
    """A BERT WordPiece tokenizer from ``vocab.txt`` and, when present, its ``tokenizer_config.json``."""
    config_file = vocab_file.parent / "tokenizer_config.json"
    config: dict[str, Any] = {}
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{str(config_file)!r} is not valid JSON: {exc}") from exc
        if not isinstance(config, dict):
            raise CheckpointError(f"{str(config_file)!r} must hold a JSON object, got {type(config).__name__}")
    lowercase = config.get("do_lower_case", True)
    if not isinstance(lowercase, bool):
        raise CheckpointError(f"do_lower_case in {str(config_file)!r} must be true or false, got {lowercase!r}")
    names = {role: _token_name(config.get(f"{role}_token"), default) for role, default in _BERT_SPECIALS.items()}
    try:
        vocab = models.WordPiece.read_file(str(vocab_file))
    except Exception as exc:  # the backend raises bare Exception
        raise CheckpointError(f"{str(vocab_file)!r} is not a readable vocab.txt (one UTF-8 token a line): "
                              f"{str(exc)[:200]}") from exc
    if names["unk"] not in vocab:
        raise CheckpointError(f"{str(vocab_file)!r} lacks the unknown token {names['unk']!r}; expected a BERT "
                              "vocab.txt")
    backend = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token=names["unk"], max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        strip_accents=strip_accents if isinstance(strip_accents := config.get("strip_accents"), bool) else None,
        lowercase=lowercase,
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens([name for name in names.values() if name in vocab])
    if names["cls"] in vocab and names["sep"] in vocab:
        backend.post_processor = _cls_sep_template(backend, names["cls"], names["sep"])
    return backend


def _token_name(value: object, default: str) -> str:
    """A special token's name from ``tokenizer_config.json``: a string or an AddedToken-style object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return default
