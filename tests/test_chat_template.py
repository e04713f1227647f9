"""Chat templates rendered as ``transformers``' ``apply_chat_template`` renders them (ChatML with a default system
prompt, Llama 3, Mistral, Gemma, a whitespace-heavy template with namespaces, loop controls and ``tojson``), the
end-of-turn tokens found, the sandbox holding, and the template and token roles saved beside ``tokenizer.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from multihead.chat_template import ChatTemplate, end_of_turn_ids, render_chat_template
from multihead.errors import CheckpointError, ConfigError
from multihead.tokenizers import Tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>", "<s>", "</s>", "<bos>", "<start_of_turn>", "<end_of_turn>"]
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
          "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>"
          "\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}{% if message['role'] == 'user' %}"
           "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}"
           "{% endfor %}")
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
         "{% endif %}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else "
         "message['role'] %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
BLOCKS = """{%- set ns = namespace(system='') -%}
{% for message in messages %}
    {% if message.role == 'system' %}
        {% set ns.system = message.content %}
    {% endif %}
{% endfor %}
{% if ns.system %}
System: {{ ns.system }}
{% endif %}
{% for message in messages if message.role != 'system' %}
    {% if loop.index > 3 %}{% break %}{% endif %}
{% generation %}{{ message.role | capitalize }}: {{ message.content }}{% endgeneration %}

{% endfor %}
{% if tools is defined %}Tools: {{ tools | tojson }}
{% endif %}
{% if add_generation_prompt %}
Assistant:{% endif %}"""
TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "mistral": MISTRAL, "gemma": GEMMA, "blocks": BLOCKS}
SYSTEM = {"role": "system", "content": "Answer briefly & in <b>French</b>."}
TURNS = [{"role": "user", "content": "  Bonjour! Ça va?  "}, {"role": "assistant", "content": "Oui, merci."},
         {"role": "user", "content": "Et toi?\nDis-moi tout."}]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    texts = ["Bonjour, ça va? Oui, merci.", "Answer briefly in French.", "user assistant system model"] * 4
    trained = Tokenizer.train_from_texts(texts, kind="byte_bpe", vocab_size=400, special_tokens=SPECIALS,
                                         min_frequency=1)
    return Tokenizer(trained.backend, special_tokens={"bos": "<s>", "eos": "</s>", "pad": "<|endoftext|>"})


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("system", [False, True])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_render_equals_apply_chat_template(tokenizer: Tokenizer, name: str, system: bool,
                                           add_generation_prompt: bool) -> None:
    transformers = pytest.importorskip("transformers", reason="compared with transformers' apply_chat_template")
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, bos_token="<s>",
                                                  eos_token="</s>", pad_token="<|endoftext|>")
    messages = ([SYSTEM] if system else []) + TURNS
    options: dict[str, Any] = {"tools": [{"name": "lookup<x>", "description": "é & ü"}]} if name == "blocks" else {}
    ours = ChatTemplate.from_tokenizer(tokenizer, TEMPLATES[name])
    assert ours is not None
    try:
        expected = theirs.apply_chat_template(messages, chat_template=TEMPLATES[name], tokenize=False,
                                              add_generation_prompt=add_generation_prompt, **options)
    except Exception as error:  # the template refuses (Gemma: no system role; Mistral: a system turn first)
        assert name in ("gemma", "mistral") and system
        with pytest.raises(ConfigError, match=f"the chat template refused the messages: {re.escape(str(error))}$"):
            ours.render(messages, add_generation_prompt=add_generation_prompt)
        return
    assert ours.render(messages, add_generation_prompt=add_generation_prompt, **options) == expected
    ids = theirs.apply_chat_template(messages, chat_template=TEMPLATES[name], tokenize=True, return_dict=False,
                                     add_generation_prompt=add_generation_prompt, **options)
    assert ours.encode(messages, add_generation_prompt=add_generation_prompt, **options) == list(ids)


@pytest.mark.parametrize(("name", "stop"), [("chatml", "<|im_end|>"), ("llama3", "<|eot_id|>"),
                                            ("gemma", "<end_of_turn>"), ("mistral", "</s>"), ("blocks", None)])
def test_end_of_turn_tokens(tokenizer: Tokenizer, name: str, stop: str | None) -> None:
    expected = {tokenizer.eos_id} | ({tokenizer.token_to_id(stop)} if stop else set())
    assert set(end_of_turn_ids(TEMPLATES[name], tokenizer)) == expected
    template = ChatTemplate.from_tokenizer(tokenizer, TEMPLATES[name])
    assert template is not None and set(template.stop_ids) == expected


def test_refusals_and_the_sandbox(tokenizer: Tokenizer) -> None:
    with pytest.raises(ConfigError, match="refused the messages: roles must alternate user/assistant"):
        render_chat_template(MISTRAL, [TURNS[0], TURNS[0]])
    with pytest.raises(ConfigError, match="unsafe"):
        render_chat_template("{{ ''.__class__.__mro__ }}", [])
    with pytest.raises(ConfigError, match="may not start with an underscore"):
        render_chat_template("{% set ns = namespace() %}{% set ns._x = 1 %}", [])
    with pytest.raises(ConfigError, match="failed on these messages"):
        render_chat_template("{{ messages[0].content.upper(1, 2) }}", TURNS)
    with pytest.raises(CheckpointError, match="not valid Jinja: line 2"):
        render_chat_template("ok\n{% for %}", [])
    with pytest.raises(ConfigError, match=r"messages\[0\] has no string \"role\""):
        render_chat_template(CHATML, [{"content": "hi"}])
    assert ChatTemplate.from_tokenizer(tokenizer) is None  # no template of its own


def test_roles_and_template_saved_beside_tokenizer_json(tokenizer: Tokenizer, tmp_path: Path) -> None:
    chatty = Tokenizer(tokenizer.backend, special_tokens=tokenizer.special_tokens, chat_template=LLAMA3)
    chatty.save(tmp_path / "tokenizer.json")
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "<s>" and config["eos_token"] == "</s>" and config["chat_template"] == LLAMA3
    for path in (tmp_path, tmp_path / "tokenizer.json"):
        loaded = Tokenizer.load(path)
        assert loaded.special_tokens == {"bos": "<s>", "eos": "</s>", "pad": "<|endoftext|>"}
        assert (loaded.bos_id, loaded.eos_id) == (tokenizer.bos_id, tokenizer.eos_id)
        assert loaded.chat_template == LLAMA3
    (tmp_path / "chat_template.jinja").write_text(GEMMA)  # wins over the JSON key, as in transformers
    assert Tokenizer.load(tmp_path).chat_template == GEMMA
    transformers = pytest.importorskip("transformers")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert (theirs.bos_token, theirs.eos_token, theirs.chat_template) == ("<s>", "</s>", GEMMA)
    plain = Tokenizer(tokenizer.backend)
    plain.save(tmp_path / "plain" / "tokenizer.json")
    assert not (tmp_path / "plain" / "tokenizer_config.json").exists()  # nothing to say: no file


def test_bad_roles_and_config_files(tokenizer: Tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"special_tokens\['bos'\] = '<nope>'"):
        Tokenizer(tokenizer.backend, special_tokens={"bos": "<nope>"})
    with pytest.raises(ValueError, match=r"special_tokens\['speaker'\]"):
        Tokenizer(tokenizer.backend, special_tokens={"speaker": "<s>"})
    tokenizer.save(tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "<|im_end|>", "bos_token": "<absent>"')
    with pytest.raises(CheckpointError, match=r"tokenizer_config\.json: line 1: not valid JSON"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": {"content": "<|im_end|>"}, "bos_token": "<absent>"}')
    loaded = Tokenizer.load(tmp_path)  # roles naming tokens the vocabulary lacks are left to the names
    assert loaded.eos_id == tokenizer.token_to_id("<|im_end|>") and loaded.special_tokens == {"eos": "<|im_end|>"}


def test_a_folder_written_by_transformers_reads_back(tokenizer: Tokenizer, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, bos_token="<|im_start|>",
                                                  eos_token="<|im_end|>", chat_template=CHATML)
    theirs.save_pretrained(tmp_path)
    ours = Tokenizer.load(tmp_path)
    assert (ours.bos_id, ours.eos_id) == (theirs.bos_token_id, theirs.eos_token_id)
    assert ours.chat_template == CHATML
    template = ChatTemplate.from_tokenizer(ours)
    assert template is not None and template.stop_ids == (ours.token_to_id("<|im_end|>"),)
    assert template.render(TURNS, add_generation_prompt=True) == theirs.apply_chat_template(
        TURNS, tokenize=False, add_generation_prompt=True)
