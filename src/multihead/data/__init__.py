"""Data: streaming readers for labelled text, label vocabularies, splits, batching and the known data sets."""

from multihead.data.batching import BucketBatchSampler, pad_batch
from multihead.data.datasets import (
    SOURCES,
    SPLITS,
    bbc_news_topics,
    data_root,
    multi30k,
    sentence_polarity,
    tinyshakespeare,
)
from multihead.data.errors import DataError, ReadReport
from multihead.data.labels import LabelVocab
from multihead.data.parallel import read_parallel
from multihead.data.readers import (
    FORMATS,
    Example,
    infer_format,
    read_delimited,
    read_examples,
    read_folder,
    read_jsonl,
    read_lines,
)
from multihead.data.splits import split_by_fraction, stratified_split
from multihead.data.summaries import (
    Article,
    bbc_news_summary,
    lead,
    read_summary_file,
    split_sentences,
    split_summary,
    summary_labels,
)

__all__ = [
    "FORMATS",
    "SOURCES",
    "SPLITS",
    "Article",
    "BucketBatchSampler",
    "DataError",
    "Example",
    "LabelVocab",
    "ReadReport",
    "bbc_news_summary",
    "bbc_news_topics",
    "data_root",
    "infer_format",
    "lead",
    "multi30k",
    "pad_batch",
    "read_delimited",
    "read_examples",
    "read_folder",
    "read_jsonl",
    "read_lines",
    "read_parallel",
    "read_summary_file",
    "sentence_polarity",
    "split_by_fraction",
    "split_sentences",
    "split_summary",
    "stratified_split",
    "summary_labels",
    "tinyshakespeare",
]
