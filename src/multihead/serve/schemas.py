"""Request bodies, validated by pydantic: OpenAI's shapes for chat, completions and embeddings (unknown fields
ignored, as OpenAI's clients send extras; options we cannot honour refused by name), strict shapes for the task
routes. A model is named, never a path: the name is looked up among the models the server loaded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AnswerRequest", "AttentionRequest", "ChatCompletionRequest", "ChatMessage", "ClassifyRequest",
           "CompletionRequest", "EmbeddingRequest", "SamplingOptions", "Seq2SeqRequest", "SummarizeRequest",
           "TranslateRequest"]

ModelName = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=1_000_000)]


class _OpenAI(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingOptions(_OpenAI):
    """Decoding options shared by chat and completions; ``temperature`` 0 decodes greedily."""

    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    stop: str | list[Annotated[str, Field(min_length=1, max_length=200)]] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: bool | int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop sequences, got {len(stops)}")
        if any(not stop for stop in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None) -> None:
        if value:
            raise ValueError("logprobs are not supported by this server")
        return None

    @field_validator("frequency_penalty", "presence_penalty")
    @classmethod
    def _no_penalties(cls, value: float | None) -> None:
        if value not in (None, 0, 0.0):
            raise ValueError("not supported; use repetition_penalty (> 1 discourages repeats)")
        return None

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))

    @property
    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: Text


class ChatMessage(_OpenAI):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[_TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatCompletionRequest(SamplingOptions):
    model: ModelName
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    tools: list[Any] | None = None

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> None:
        if value:
            raise ValueError("tools are not supported by this server")
        return None


class CompletionRequest(SamplingOptions):
    model: ModelName
    prompt: Text | list[Text] = Field(...)
    echo: bool = False
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("give at least one prompt")
        return value

    @field_validator("echo", "suffix")
    @classmethod
    def _plain(cls, value: bool | str | None) -> bool | str | None:
        if value:
            raise ValueError("not supported by this server")
        return value

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class EmbeddingRequest(_OpenAI):
    model: ModelName
    input: Text | list[Text]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class ClassifyRequest(_Strict):
    """Labels and probabilities of one text or several."""

    model: ModelName
    input: Text | list[Text]

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class Seq2SeqRequest(_Strict):
    """A translation or summary: beam search (``num_beams``) or sampling (``do_sample``), optionally streamed."""

    model: ModelName
    input: Text | list[Text]
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    num_beams: int | None = Field(default=None, ge=1, le=16)
    length_penalty: float | None = Field(default=None, ge=-5.0, le=5.0)
    do_sample: bool | None = None
    temperature: float | None = Field(default=None, gt=0.0, le=2.0)
    top_k: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    @model_validator(mode="after")
    def _consistent(self) -> Seq2SeqRequest:
        if self.do_sample and self.num_beams not in (None, 1):
            raise ValueError("do_sample draws one sequence: use it with num_beams 1")
        if self.stream and isinstance(self.input, list) and len(self.input) != 1:
            raise ValueError("a streamed request takes one input")
        return self

    def options(self) -> dict[str, Any]:
        """Decoding options for ``GenerationConfig`` (unset ones keep the model's defaults)."""
        values = {"max_new_tokens": self.max_tokens, "num_beams": 1 if self.do_sample else self.num_beams,
                  "length_penalty": self.length_penalty, "do_sample": self.do_sample,
                  "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p,
                  "repetition_penalty": self.repetition_penalty, "seed": self.seed}
        return {key: value for key, value in values.items() if value is not None}


class TranslateRequest(Seq2SeqRequest):
    pass


class SummarizeRequest(Seq2SeqRequest):
    sentences: int | None = Field(default=None, ge=1, le=100)


class AnswerRequest(_Strict):
    """Extractive question answering: one question and its context, or lists of both (one context each)."""

    model: ModelName
    question: Text | list[Text]
    context: Text | list[Text]
    max_answer_tokens: int | None = Field(default=None, ge=1, le=512)

    @model_validator(mode="after")
    def _paired(self) -> AnswerRequest:
        if isinstance(self.question, list) != isinstance(self.context, list):
            raise ValueError("give one question and one context, or two lists of the same length")
        if isinstance(self.question, list) and len(self.question) != len(self.context):
            raise ValueError(f"{len(self.question)} questions but {len(self.context)} contexts; one context each")
        return self

    @property
    def pairs(self) -> list[tuple[str, str]]:
        questions = [self.question] if isinstance(self.question, str) else self.question
        contexts = [self.context] if isinstance(self.context, str) else self.context
        return list(zip(questions, contexts, strict=True))


class AttentionRequest(_Strict):
    """The per-head attention maps of one input: a finished completion of this server (``completion_id``), or
    ``input`` (with ``output`` for an encoder-decoder, decoded now when absent)."""

    model: ModelName
    completion_id: str | None = Field(default=None, max_length=100)
    choice: int = Field(default=0, ge=0)
    input: Text | None = None
    output: Text | None = None
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, min_length=1, max_length=1000)
    format: Literal["json", "html"] = "json"

    @model_validator(mode="after")
    def _one_source(self) -> AttentionRequest:
        if (self.completion_id is None) == (self.input is None):
            raise ValueError("give either completion_id (a completion of this server) or input")
        return self
