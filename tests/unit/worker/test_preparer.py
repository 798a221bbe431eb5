"""The preparer thread counts prompt tokens while the engine thread encodes and decodes, and
hands the kept prompt's ids to the engine."""

from __future__ import annotations

import threading
from pathlib import Path

from services.worker.engine import GenerationRequest
from services.worker.engine.onnx_runtime import load_onnx_engine
from services.worker.prompt import PromptBuilder
from services.worker.prompt_encoder import own_token_counter
from shared.config import Device
from shared.messaging.schemas import ChatTurn, GenerationParams
from shared.model_layout import ModelLayout

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Where is my order? It was due on Monday " * 20},
]


def test_counting_beside_a_busy_engine_thread_never_collides(tiny_model_dir: Path) -> None:
    engine = load_onnx_engine(ModelLayout(tiny_model_dir).onnx_dir, Device.CPU, 0, "tiny")
    count_tokens = own_token_counter(engine)
    errors: list[BaseException] = []
    done = threading.Event()

    def engine_thread() -> None:
        try:
            while not done.is_set():
                engine.encode_prompt(MESSAGES)
                engine.tokenizer.decode(list(range(200)))
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=engine_thread)
    worker.start()
    try:
        counts = {count_tokens(MESSAGES) for _ in range(300)}
    finally:
        done.set()
        worker.join()
    assert errors == []
    assert counts == {engine.count_prompt_tokens(MESSAGES)}


def test_the_prompt_kept_goes_to_the_engine_encoded_and_only_its_own_model_reuses_it(
    tiny_model_dir: Path,
) -> None:
    engine = load_onnx_engine(ModelLayout(tiny_model_dir).onnx_dir, Device.CPU, 0, "tiny")
    encoder = own_token_counter(engine)
    builder = PromptBuilder("Be brief.", 256, encoder)
    history = [ChatTurn(role="user", content="Hi"), ChatTurn(role="assistant", content="Hello!")]
    messages = builder.build(history, "Where is my order?")
    encoded = encoder.encoded(messages)
    assert encoded is not None and encoded.ids == engine.encode_prompt(messages)
    # the system turn and the header of the next one: what every prompt of this system prompt
    # starts with (the question and the history come after it)
    prefix = encoded.ids[: encoded.shared_prefix]
    assert 0 < encoded.shared_prefix < len(encoded.ids)
    assert engine.encode_prompt(builder.build([], "Another question"))[: len(prefix)] == prefix
    other_system = PromptBuilder("Be verbose.", 256, encoder).build(history, "Where is my order?")
    assert engine.encode_prompt(other_system)[: len(prefix)] != prefix
    request = GenerationRequest(
        "r",
        messages,
        GenerationParams(max_new_tokens=4),
        prompt_ids=(1, 2, 3),
        encoded_by=encoder.encoded_by,
    )
    assert engine.prompt_of(request) == [1, 2, 3]  # taken as given: not encoded again
    switched = GenerationRequest(
        "r",
        messages,
        GenerationParams(max_new_tokens=4),
        prompt_ids=(1, 2, 3),
        encoded_by="another-model",
    )
    assert engine.prompt_of(switched) == engine.encode_prompt(messages)
