"""Zero-shot QA with a chat model: the fixed prompt, greedy replies equal to plain greedy decoding of that prompt,
questions that do not see each other, reply cleaning and the seeded sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from multihead.chat import load_chat_model
from multihead.data.squad import QAAnswer, QAExample
from multihead.generation import GenerationConfig, generate
from multihead.model_dir import save_model_dir
from multihead.models import DecoderLM, TransformerConfig
from multihead.tasks.qa_chat import SYSTEM_PROMPT, USER_PROMPT, chat_answers, clean_reply, sample_questions
from multihead.tokenizers import Tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[PAD]"]
TEXTS = ["Marie Curie was born in Warsaw.", "Where was Marie Curie born?", "The river flows to the sea.",
         "What does the river do?", "answer question passage"]


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> object:
    tokenizer = Tokenizer.train_from_texts(TEXTS * 10, kind="byte_bpe", vocab_size=320, special_tokens=SPECIALS)
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                               dropout=0.0, max_length=512, positions="rope", pad_id=tokenizer.token_to_id("[PAD]"))
    model = DecoderLM(config)
    for parameter in model.parameters():  # wide weights: replies differ between prompts
        if parameter.dim() >= 2:
            nn.init.normal_(parameter, std=0.3)
    folder = save_model_dir(tmp_path_factory.mktemp("chat") / "lm", model=model.eval(), tokenizer=tokenizer,
                            extra={"task": "language-model"})
    return load_chat_model(folder)


def questions() -> list[QAExample]:
    return [QAExample(id="a", question="Where was Marie Curie born?", context=TEXTS[0],
                      answers=(QAAnswer("Warsaw", 24),)),
            QAExample(id="b", question="What does the river do?", context=TEXTS[2], answers=())]


def test_answers_are_greedy_replies_to_the_fixed_prompt(chat: object) -> None:
    examples = questions()
    answers = chat_answers(chat, examples, max_new_tokens=6, max_length=256)
    assert list(answers) == ["a", "b"]
    for example in examples:
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": USER_PROMPT.format(context=example.context, question=example.question)}]
        prompt = chat.tokenizer.encode(chat.render(messages), add_special_tokens=False)
        config = GenerationConfig(max_new_tokens=6, stop_token_ids=tuple(chat.stop_token_ids))
        (best, *_), = generate(chat.model, [prompt], config)
        assert answers[example.id] == clean_reply(chat.tokenizer.decode(best.tokens))
    # each question is answered alone: the same answers in the other order and one at a time
    assert chat_answers(chat, examples[::-1], max_new_tokens=6, max_length=256) == answers
    assert chat_answers(chat, examples[1:], max_new_tokens=6, max_length=256) == {"b": answers["b"]}


@pytest.mark.parametrize(("reply", "expected"), [
    ("  Warsaw\nShe was born there.", "Warsaw"),
    ("\n\nAnswer: in 1867", "in 1867"),
    (": 6", "6"),
    ("The answer is Denver Broncos.", "Denver Broncos."),
    ("", ""),
])
def test_clean_reply(reply: str, expected: str) -> None:
    assert clean_reply(reply) == expected


def test_sample_is_seeded_and_keeps_order() -> None:
    examples = [QAExample(id=str(i), question="q", context="c", answers=()) for i in range(50)]
    first, again = sample_questions(examples, 10, seed=3), sample_questions(examples, 10, seed=3)
    assert first == again and len({e.id for e in first}) == 10
    assert [int(e.id) for e in first] == sorted(int(e.id) for e in first)
    assert sample_questions(examples, 10, seed=4) != first
    assert sample_questions(examples, 80) == examples


def test_the_prompt_holds_the_passage_and_the_question(tmp_path: Path) -> None:
    text = USER_PROMPT.format(context="PASSAGE TEXT", question="QUESTION TEXT")
    assert "PASSAGE TEXT" in text and "QUESTION TEXT" in text and text.index("PASSAGE") < text.index("QUESTION")


def test_answer_cli_zero_shot_answers_a_seeded_sample_of_a_file(chat: object, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from multihead.cli.main import main

    examples = [QAExample(id=f"q{i}", question="Where was Marie Curie born?", context=TEXTS[0],
                          answers=(QAAnswer("Warsaw", 24),)) for i in range(5)]
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps({"id": e.id, "context": e.context, "question": e.question,
                                        "answers": [{"text": "Warsaw", "answer_start": 24}]}) + "\n"
                            for e in examples), encoding="utf-8")
    folder = str(chat.name)  # type: ignore[attr-defined]  # the model directory it was loaded from
    out = tmp_path / "predictions.json"
    assert main(["answer", folder, "--zero-shot", "--data", str(data), "--out", str(out), "--sample", "3",
                 "--seed", "1"]) == 0
    predictions = json.loads(out.read_text(encoding="utf-8"))
    expected = chat_answers(chat, sample_questions(examples, 3, seed=1), max_new_tokens=32)
    assert predictions == expected and len(predictions) == 3
    assert "exact match" in capsys.readouterr().out
    assert main(["answer", folder, "--data", str(data), "--out", str(out), "--sample", "3"]) == 2
