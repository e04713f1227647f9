"""BERT parity: tiny random ``BertModel`` / ``BertForSequenceClassification`` loaded into our ``Encoder`` /
``SequenceClassifier`` give the same hidden states and logits, and ours saved back load in ``transformers``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_tiny import bert, hf_model, transformers
from safetensors.torch import load_file, save_file

from multihead.interop import load_hf, save_hf
from multihead.models import Encoder, SequenceClassifier, TransformerConfig
from multihead.tokenizers import Tokenizer

ATOL = 1e-5


def batch(vocab_size: int = 99) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of mixed lengths (12, 8, 5 real tokens), right-padded with id 0, and their mask."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocab_size, (3, 12), generator=generator)
    ids[1, 8:] = 0
    ids[2, 5:] = 0
    return ids, ids != 0


def test_encoder_hidden_states_equal_bert(tmp_path: Path) -> None:
    directory = bert(tmp_path)
    loaded = load_hf(directory)
    assert isinstance(loaded.model, Encoder) and loaded.labels is None
    ids, mask = batch()
    with torch.no_grad():
        expected = hf_model("BertModel", directory)(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        actual = loaded.model(ids)
    real = mask[..., None]  # BERT leaves arbitrary values at padding; ours are zeros
    torch.testing.assert_close(actual * real, expected * real, atol=ATOL, rtol=0)


def test_classifier_logits_equal_bert(tmp_path: Path) -> None:
    directory = bert(tmp_path, classify=True)
    loaded = load_hf(directory)
    assert isinstance(loaded.model, SequenceClassifier)
    assert loaded.labels == ["neg", "neutral", "pos"] and loaded.model.pooling == "cls"
    ids, mask = batch()
    with torch.no_grad():
        expected = hf_model("BertForSequenceClassification", directory)(input_ids=ids, attention_mask=mask.long())
        actual = loaded.model(ids)
    torch.testing.assert_close(actual, expected.logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("classify", [False, True])
def test_saved_model_loads_in_transformers_and_agrees(tmp_path: Path, classify: bool) -> None:
    loaded = load_hf(bert(tmp_path / "hf", classify=classify))
    save_hf(loaded.model, tmp_path / "out", hf_config=loaded.hf_config)
    ids, mask = batch()
    with torch.no_grad():
        expected = loaded.model(ids)
        if classify:
            back = hf_model("BertForSequenceClassification", tmp_path / "out")
            torch.testing.assert_close(back(input_ids=ids, attention_mask=mask.long()).logits, expected, atol=ATOL,
                                       rtol=0)
            assert back.config.id2label == {0: "neg", 1: "neutral", 2: "pos"}
        else:
            back = transformers.BertModel.from_pretrained(tmp_path / "out", add_pooling_layer=False).eval()
            hidden = back(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            torch.testing.assert_close(hidden * mask[..., None], expected, atol=ATOL, rtol=0)


def test_pytorch_model_bin_and_old_layer_norm_names_load(tmp_path: Path) -> None:
    """``pytorch_model.bin`` (read with ``weights_only=True``) and ``gamma``/``beta`` LayerNorm names."""
    directory = bert(tmp_path)
    reference = load_hf(directory).model
    tensors = load_file(str(directory / "model.safetensors"))
    renamed = {name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): value
               for name, value in tensors.items()}
    torch.save(renamed, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    model = load_hf(directory).model
    for (name, expected), actual in zip(reference.state_dict().items(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(actual, expected, atol=0, rtol=0, msg=name)


def test_save_hf_writes_a_tokenizer_that_transformers_reads(tmp_path: Path) -> None:
    tokenizer = Tokenizer.train_from_texts(["the cat sat on the mat", "a dog ran in the park"] * 5, kind="wordpiece",
                                           vocab_size=60, lowercase=True, min_frequency=1)
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2, n_layers=1, norm_first=False,
                               positions="learned", max_length=32, embedding_norm=True, pad_id=tokenizer.pad_id)
    save_hf(Encoder(config), tmp_path, tokenizer=tokenizer)
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "The dog sat on a mat"
    assert theirs(text)["input_ids"] == tokenizer.encode(text)
    assert theirs.pad_token_id == tokenizer.pad_id
    assert load_hf(tmp_path).tokenizer.encode(text) == tokenizer.encode(text)  # type: ignore[union-attr]


def test_unknown_model_type_is_an_error_that_names_it(tmp_path: Path) -> None:
    directory = bert(tmp_path)
    values = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**values, "model_type": "gemma"}))
    with pytest.raises(ValueError, match=r"model_type 'gemma' is not supported; expected one of \('bert', 'gpt2'"):
        load_hf(directory)


def test_missing_and_unexpected_tensors_are_listed(tmp_path: Path) -> None:
    directory = bert(tmp_path)
    tensors = load_file(str(directory / "model.safetensors"))
    del tensors["encoder.layer.1.output.dense.bias"]
    tensors["encoder.layer.1.extra.weight"] = torch.zeros(2)
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['encoder\.layer\.1\.output\.dense\.bias'\], "
                                         r"unexpected \['encoder\.layer\.1\.extra\.weight'\]"):
        load_hf(directory)


def test_options_we_cannot_reproduce_are_errors(tmp_path: Path) -> None:
    directory = bert(tmp_path)
    values = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**values, "position_embedding_type": "relative_key"}))
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key' is not supported"):
        load_hf(directory)
    (directory / "config.json").write_text(json.dumps({**values, "hidden_act": "mish"}))
    with pytest.raises(ValueError, match="hidden_act 'mish' is not supported"):
        load_hf(directory)


def test_save_hf_lists_every_reason_a_model_is_not_bert(tmp_path: Path) -> None:
    model = Encoder(TransformerConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1))  # pre-norm, sinusoidal
    with pytest.raises(ValueError, match=r"cannot save as BertModel: norm_first must be False \(got True\); "
                                         r"positions must be 'learned' .*embedding_norm must be True"):
        save_hf(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
