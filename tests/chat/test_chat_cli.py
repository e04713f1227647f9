"""``multihead chat MODEL`` run in-process: replies on stdout equal ``ChatSession``'s, slash commands, notices,
end of input; with the real SmolLM2 (when installed), the capital of France is Paris."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from tiny_chat import chat_model, chat_tokenizer

from multihead.chat import load_chat_model
from multihead.chat.load import CHATML
from multihead.cli.chat import chat_loop
from multihead.cli.main import main
from multihead.generation import GenerationConfig
from multihead.model_dir import save_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("chat") / "tiny-chat"
    save_model_dir(directory, model=chat_model(max_length=128), tokenizer=chat_tokenizer(),
                   extra={"task": "language-model"})
    (directory / "chat_template.jinja").write_text(CHATML, encoding="utf-8")
    return directory


def run_chat(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], arguments: list[str],
             stdin: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(["chat", *arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def expected_replies(model_dir: Path, messages: list[str], **options: object) -> list[str]:
    session = load_chat_model(model_dir).session(generation=GenerationConfig(**options))  # type: ignore[arg-type]
    return [session.send(message) for message in messages]


def test_each_line_gets_the_sessions_reply_and_slash_commands_work(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    transcript = tmp_path / "chat.json"
    stdin = (f"What is the capital of France?\n/save {transcript}\nTell me a story.\n/save {transcript}\n"
             "/reset\nWhat is the capital of France?\n/bogus\n/exit\nnever read\n")
    status, out, err = run_chat(monkeypatch, capsys, [str(model_dir), "--max-new-tokens", "6"], stdin)
    first, second = expected_replies(model_dir, ["What is the capital of France?", "Tell me a story."],
                                     max_new_tokens=6)
    assert status == 0
    assert out.splitlines() == [first, second, first]  # after /reset the first question is new again
    saved = json.loads(transcript.read_text(encoding="utf-8"))["messages"]
    assert saved == [{"role": "user", "content": "What is the capital of France?"},
                     {"role": "assistant", "content": first}]
    assert f"{transcript} exists; /save {transcript} --overwrite replaces it" in err  # the second /save
    assert "(conversation forgotten)" in err and "unknown command '/bogus'" in err


def test_end_of_input_ends_cleanly_and_sampling_flags_reach_the_session(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--max-new-tokens", "5", "--do-sample", "--seed", "3", "--temperature", "0.7", "--top-k", "9",
             "--system", "Be brief."]
    status, out, _ = run_chat(monkeypatch, capsys, [str(model_dir), *flags], "Hi\n")
    session = load_chat_model(model_dir).session(
        system="Be brief.", generation=GenerationConfig(max_new_tokens=5, do_sample=True, seed=3, temperature=0.7,
                                                        top_k=9))
    assert status == 0 and out.splitlines() == [session.send("Hi")]


def test_old_turns_leave_with_a_notice_on_stderr(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = "What is the capital of France?\nTell me a story.\nAbout a dog.\nAnd a cat?\n"
    status, out, err = run_chat(monkeypatch, capsys, [str(model_dir), "--context", "64", "--max-new-tokens", "12"],
                                stdin)
    assert status == 0 and len(out.splitlines()) == 4
    assert "dropped the oldest" in err


def test_bad_model_and_bad_flags_are_one_line_errors(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_chat(monkeypatch, capsys, [str(tmp_path / "missing")], "")
    assert status == 2 and err.startswith("multihead chat: error: ") and "missing: not a directory" in err
    status, _, err = run_chat(monkeypatch, capsys, [str(model_dir), "--top-p", "1.5"], "")
    assert status == 2 and "top_p" in err and len(err.strip().splitlines()) == 1


def test_generate_chat_sends_one_turn(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = load_chat_model(model_dir).session(
        system="Be brief.", generation=GenerationConfig(max_new_tokens=7)).send("Hello there")
    assert main(["generate", str(model_dir), "--chat", "Hello there", "--system", "Be brief.",
                 "--max-new-tokens", "7"]) == 0
    assert capsys.readouterr().out == expected + "\n"
    assert main(["generate", str(model_dir), "--chat", "Hello there", "--system", "Be brief.",
                 "--max-new-tokens", "7", "--stream"]) == 0
    assert capsys.readouterr().out == expected + "\n"
    assert main(["generate", str(model_dir), "--chat", "Hi", "--prompt", "Once"]) == 2
    assert "give one of them" in capsys.readouterr().err


class Interrupting(io.StringIO):
    """A stdout whose first write of a reply raises ``KeyboardInterrupt`` (Ctrl-C while a reply streams)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = True

    def write(self, text: str) -> int:
        if self.armed and text.strip():
            self.armed = False
            raise KeyboardInterrupt
        return super().write(text)


class CtrlCAtPrompt(io.StringIO):
    """A stdin that gives its lines, then Ctrl-C at the next prompt."""

    def readline(self, size: int = -1) -> str:
        line = super().readline(size)
        if not line:
            raise KeyboardInterrupt
        return line


def test_ctrl_c_stops_a_reply_then_ends_the_chat_at_the_prompt(model_dir: Path) -> None:
    session = load_chat_model(model_dir).session(generation=GenerationConfig(max_new_tokens=6))
    stdout, stderr = Interrupting(), io.StringIO()
    status = chat_loop(session, {}, stdin=CtrlCAtPrompt("Tell me a story.\nHi\n"), stdout=stdout, stderr=stderr)
    assert status == 0
    interrupted, reply, after_ctrl_c = stdout.getvalue().split("\n", 2)
    assert interrupted.endswith(" [interrupted]") and after_ctrl_c == "\n"
    assert session.turns[0][0] == "Tell me a story." and len(session.turns) == 2
    full = load_chat_model(model_dir).session(generation=GenerationConfig(max_new_tokens=6)).send("Tell me a story.")
    assert session.turns[0][1] != full  # the reply was cut short
    assert reply == session.turns[1][1] != ""  # the chat went on after the interrupted reply
