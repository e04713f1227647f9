"""Tiny random models for the server tests and a real uvicorn server on a free loopback port, in a thread.

The chat model is a random ``DecoderLM`` over a byte-level BPE tokenizer with ChatML's special tokens (weights
drawn wide so that greedy outputs differ between prompts); the classifier, encoder and translator are random
too. Nothing is downloaded; everything is built in a second.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import uvicorn
from torch import nn

from multihead import DecoderLM, Encoder, EncoderDecoder, SequenceClassifier, TransformerConfig
from multihead.chat.load import load_chat_model
from multihead.data import LabelVocab
from multihead.embeddings import SentenceEncoder
from multihead.model_dir import save_model_dir
from multihead.serve import (
    Classifier,
    Embedder,
    Generator,
    ServedModel,
    ServeSettings,
    Translator,
    create_app,
)
from multihead.tasks.seq2seq_eval import Seq2SeqModel
from multihead.tokenizers import Tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[PAD]", "[CLS]", "[SEP]", "[BOS]", "[EOS]"]
TEXTS = ["What is the capital of France?", "The capital of France is Paris.", "naïve café, déjà vu, 日本語",
         "Tell me a story about a dog and a cat.", "Once upon a time there was a small robot.",
         "A dog runs on the beach.", "Ein Hund läuft am Strand.", "The film was gripping and funny."]
LABELS = ["negative", "positive", "neutral"]


@functools.cache
def tokenizer() -> Tokenizer:
    return Tokenizer.train_from_texts(TEXTS * 20, kind="byte_bpe", vocab_size=360, special_tokens=SPECIALS)


@functools.cache
def word_tokenizer() -> Tokenizer:
    """A WordPiece tokenizer that adds [CLS] ... [SEP] (for the encoder-based models)."""
    return Tokenizer.train_from_texts(TEXTS * 20, kind="wordpiece", vocab_size=200)


def config(vocab_size: int, **overrides: object) -> TransformerConfig:
    options: dict[str, object] = {"vocab_size": vocab_size, "d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64,
                                  "dropout": 0.0, "max_length": 256, "positions": "rope", "pad_id": 0,
                                  "tie_embeddings": False}
    options.update(overrides)
    return TransformerConfig(**options)  # type: ignore[arg-type]


def _widen(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    for parameter in model.parameters():
        if parameter.dim() >= 2:
            nn.init.normal_(parameter, std=0.2)
    return model.eval()


def lm(seed: int = 0) -> DecoderLM:
    torch.manual_seed(seed)
    model = DecoderLM(config(tokenizer().vocab_size, pad_id=tokenizer().token_to_id("[PAD]")))
    return _widen(model, seed)  # type: ignore[return-value]


@functools.cache
def _chat_dir(seed: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="multihead-serve-test-"))
    atexit.register(shutil.rmtree, folder, True)
    return save_chat_dir(folder / "lm", seed)


def chat_model(name: str = "chat", seed: int = 0) -> Generator:
    """The tiny language model as ``multihead.chat`` loads it (no template of its own: ChatML turns); a new
    model object each call."""
    return Generator(name, load_chat_model(_chat_dir(seed)))


def classifier(name: str = "sentiment") -> Classifier:
    words = word_tokenizer()
    torch.manual_seed(1)
    model = SequenceClassifier(config(words.vocab_size, positions="learned"), n_classes=len(LABELS))
    return Classifier(name, _widen(model, 1), words, list(LABELS), max_length=64)


def embedder(name: str = "encoder") -> Embedder:
    words = word_tokenizer()
    torch.manual_seed(2)
    model = _widen(Encoder(config(words.vocab_size, positions="learned")), 2)
    return Embedder(name, SentenceEncoder(encoder=model, tokenizer=words, max_length=64))  # type: ignore[arg-type]


def translator(name: str = "en-de") -> Translator:
    words = tokenizer()
    torch.manual_seed(3)
    model = _widen(EncoderDecoder(config(words.vocab_size, positions="learned", max_length=64)), 3)
    seq2seq = Seq2SeqModel(model=model, source_tokenizer=words, target_tokenizer=words,  # type: ignore[arg-type]
                           config={"experiment": {"data": {"max_length": 32, "max_target_length": 12}}})
    return Translator(name, seq2seq, task="translation")


def all_models() -> dict[str, ServedModel]:
    return {model.name: model for model in (chat_model(), classifier(), embedder(), translator())}


def save_chat_dir(directory: Path, seed: int = 0) -> Path:
    """A language-model directory (``config.json``, weights, ``tokenizer.json``) as ``multihead train`` writes."""
    return save_model_dir(directory, model=lm(seed), tokenizer=tokenizer(), extra={"task": "language-model"})


class RunningServer:
    """A uvicorn server on 127.0.0.1 in a background thread; ``url`` once started."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,  # type: ignore[arg-type]
                                                    access_log=False, lifespan="on", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def state(self) -> object:
        return self.app.state.server  # type: ignore[attr-defined]


@contextlib.contextmanager
def serving(models: dict[str, ServedModel], **settings: object) -> Iterator[RunningServer]:
    """A server for ``models`` under ``ServeSettings(**settings)``, stopped (schedulers too) on exit."""
    app = create_app(models, ServeSettings(**settings))  # type: ignore[arg-type]
    try:
        with RunningServer(app) as running:
            yield running
    finally:
        app.state.server.close()


def wait_until(condition: object, seconds: float = 10.0) -> bool:
    """Poll ``condition()`` until true or ``seconds`` pass (for state another thread changes)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return bool(condition())  # type: ignore[operator]


def label_vocab() -> LabelVocab:
    return LabelVocab(LABELS)
