"""``ChatSession``: each reply equals ``generate`` on the rendered conversation (the cache reused across turns
changes nothing), stop tokens end replies, old turns leave the view with a notice, reset and save."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_chat import chat_model, chat_tokenizer, end_of_turn, render

from multihead import DecoderLM
from multihead.chat import ChatSession, Message
from multihead.errors import ConfigError, LimitError, MultiheadError
from multihead.generation import GenerationConfig, generate

SYSTEM = "You are a helpful assistant."


def session(model: DecoderLM, **options: object) -> ChatSession:
    options.setdefault("generation", GenerationConfig(max_new_tokens=12))
    return ChatSession(model, chat_tokenizer(), render=render, stop_token_ids=[end_of_turn()], system=SYSTEM,
                       **options)  # type: ignore[arg-type]


def reference(model: DecoderLM, messages: list[Message], config: GenerationConfig) -> str:
    """The reply by ``generate`` on the rendered conversation, from scratch."""
    tokenizer = chat_tokenizer()
    ids = tokenizer.encode(render(messages), add_special_tokens=False)
    stops = config.replace(stop_token_ids=(end_of_turn(),), eos_id=tokenizer.eos_id)
    return tokenizer.decode(generate(model, [ids], stops)[0][0].tokens)


def test_each_turn_equals_generate_on_the_whole_conversation_and_reuses_the_cache() -> None:
    model = chat_model()
    chat = session(model)
    config = GenerationConfig(max_new_tokens=12)
    history: list[Message] = [{"role": "system", "content": SYSTEM}]
    for turn, text in enumerate(["What is the capital of France?", "Tell me a story.", "Thanks!"]):
        history.append({"role": "user", "content": text})
        reply = chat.send(text)
        assert reply == reference(model, history, config)
        history.append({"role": "assistant", "content": reply})
        stats = chat.last_turn
        assert stats is not None and stats.generated_tokens > 0
        if turn > 0:  # everything before the new message was already in the cache
            previous = chat_tokenizer().encode(render(history[:-3]), add_special_tokens=False)
            assert stats.reused_tokens >= len(previous)
    assert chat.messages == history


def test_sampling_options_per_turn_match_generate() -> None:
    model = chat_model(seed=1)
    chat = session(model)
    options = {"do_sample": True, "seed": 7, "temperature": 0.8, "top_k": 20, "top_p": 0.9,
               "repetition_penalty": 1.3, "max_new_tokens": 10}
    reply = chat.send("Tell me a story.", **options)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Tell me a story."}]
    assert reply == reference(model, messages, GenerationConfig(**options))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown chat option"):
        chat.send("Hi", temprature=0.5)


def test_the_end_of_turn_token_ends_the_reply() -> None:
    model = chat_model()
    tokenizer = chat_tokenizer()
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}]
    ids = tokenizer.encode(render(messages), add_special_tokens=False)
    free = generate(model, [ids], GenerationConfig(max_new_tokens=12))[0][0].tokens
    stop = free[4]  # the model writes this token fifth: let it be the end of a turn
    chat = ChatSession(model, tokenizer, render=render, stop_token_ids=[stop],
                       generation=GenerationConfig(max_new_tokens=12), system=SYSTEM)
    reply = chat.send("Hi")
    assert reply == tokenizer.decode(free[: free.index(stop)])
    assert chat.last_turn is not None and chat.last_turn.finish_reason == "stop"
    assert chat.last_turn.generated_tokens == free.index(stop)


def test_streamed_pieces_join_to_the_reply_and_an_interrupted_reply_keeps_what_was_shown() -> None:
    model = chat_model()
    whole = session(model).send("Tell me a story.")
    chat = session(model)
    pieces = list(chat.stream("Tell me a story."))
    assert "".join(pieces) == whole and len(pieces) > 1  # half characters: tests/generation/test_text_stream.py
    interrupted = session(model)
    stream = interrupted.stream("Tell me a story.")
    first = next(stream)
    stream.close()
    assert interrupted.turns == [("Tell me a story.", first)]
    assert interrupted.last_turn is not None and interrupted.last_turn.finish_reason == "interrupted"
    # the cache stays consistent: the next turn equals generate from scratch
    reply = interrupted.send("Thanks!")
    assert reply == reference(model, [*interrupted.messages[:-1]], GenerationConfig(max_new_tokens=12))


def test_old_turns_leave_the_view_with_a_notice_and_stay_in_the_transcript() -> None:
    model = chat_model(max_length=96)
    notices: list[str] = []
    chat = session(model, max_length=96, on_notice=notices.append, generation=GenerationConfig(max_new_tokens=16))
    config = GenerationConfig(max_new_tokens=16)
    for text in ["What is the capital of France?", "Tell me a story.", "About a dog.", "And a cat?", "Thanks!"]:
        reply = chat.send(text)
        view = chat._messages(chat.first_turn)  # the conversation the model saw, with this reply
        assert reply == reference(model, view[:-1], config)
        assert len(chat_tokenizer().encode(render(view[:-1]), add_special_tokens=False)) + 16 <= 96
    assert notices and notices == chat.notices and "dropped the oldest" in notices[0]
    assert chat.first_turn > 0 and len(chat.turns) == 5 and len(chat.messages) == 11
    with pytest.raises(LimitError, match="the context holds 96"):
        chat.send("a very long message " * 40)


def test_reset_forgets_the_turns_and_keeps_the_system_prompt() -> None:
    model = chat_model()
    chat = session(model)
    chat.send("Tell me a story.")
    chat.reset()
    assert chat.messages == [{"role": "system", "content": SYSTEM}] and chat.turns == []
    assert chat.send("Hi") == session(model).send("Hi")

    def prompt(text: str) -> list[int]:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        return chat_tokenizer().encode(render(messages), add_special_tokens=False)

    first, second = prompt("Tell me a story."), prompt("Hi")
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert chat.last_turn is not None and chat.last_turn.reused_tokens == shared > 30  # the system prompt


def test_save_writes_the_transcript_and_never_overwrites_unasked(tmp_path: Path) -> None:
    chat = session(chat_model())
    reply = chat.send("What is the capital of France?")
    path = chat.save(tmp_path / "chat.json")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["messages"] == [{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": "What is the capital of France?"},
                                 {"role": "assistant", "content": reply}]
    with pytest.raises(MultiheadError, match="already exists"):
        chat.save(path)
    chat.send("Thanks!")
    chat.save(path, overwrite=True)
    assert len(json.loads(path.read_text(encoding="utf-8"))["messages"]) == 5


def test_bad_settings_are_refused() -> None:
    model = chat_model()
    with pytest.raises(ConfigError, match=r"max_length must be an integer in 2\.\.256"):
        session(model, max_length=1000)
    with pytest.raises(ConfigError, match="one reply"):
        session(model).send("Hi", num_beams=2)
