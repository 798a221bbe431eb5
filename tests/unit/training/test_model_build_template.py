"""``check_chat_template``: a model whose chat template cannot render what the worker renders is
refused when it is loaded, not at the first evaluation after a fine-tuning run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from training.model_build import ModelSourceError, check_chat_template
from training.random_model import CHATML_TEMPLATE

# Gemma 3's own turn format (text only): the system prompt is folded into the first user turn,
# and roles must alternate.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

# The same format, rendering a system prompt with no user turn after it as a turn of its own
# and not insisting on alternation.
TOLERANT_GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- if loop_messages and loop_messages[0]['role'] == 'user' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{{ '<start_of_turn>user\n' + messages[0]['content'] + '<end_of_turn>\n' }}"
    "{%- set first_user_prefix = '' -%}"
    "{%- endif -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

# Renders only the last message: every other content is lost.
LAST_MESSAGE_ONLY_TEMPLATE = "{{ messages[-1]['content'] }}"


def _tokenizer(template: str) -> Any:
    backend = Tokenizer(models.WordLevel({"<bos>": 0, "<unk>": 1}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", unk_token="<unk>", chat_template=template
    )


@pytest.mark.parametrize("template", [CHATML_TEMPLATE, TOLERANT_GEMMA_TEMPLATE])
def test_a_template_that_renders_every_worker_message_list_is_accepted(template: str) -> None:
    check_chat_template(_tokenizer(template), Path("model"))


def test_gemmas_own_template_is_refused_for_a_lone_system_prompt() -> None:
    with pytest.raises(ModelSourceError, match=r"\['system'\]") as refused:
        check_chat_template(_tokenizer(GEMMA_TEMPLATE), Path("gemma"))
    assert "placeholders came out as []" in str(refused.value)


def test_a_template_that_raises_on_a_system_prompt_before_an_answer_is_refused() -> None:
    # the lone system prompt renders (as a turn of its own), the alternation check still raises
    template = GEMMA_TEMPLATE.replace(
        "{%- set loop_messages = messages[1:] -%}",
        "{%- set loop_messages = messages[1:] -%}"
        "{%- if not loop_messages -%}{{ messages[0]['content'] }}{%- endif -%}",
    )
    with pytest.raises(ModelSourceError, match=r"\['system', 'assistant'\].*must alternate"):
        check_chat_template(_tokenizer(template), Path("gemma"))


def test_a_template_that_drops_earlier_messages_is_refused() -> None:
    with pytest.raises(ModelSourceError, match=r"\['system', 'user'\]"):
        check_chat_template(_tokenizer(LAST_MESSAGE_ONLY_TEMPLATE), Path("model"))
