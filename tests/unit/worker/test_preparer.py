"""The preparer thread counts prompt tokens while the engine thread encodes and decodes."""

from __future__ import annotations

import threading
from pathlib import Path

from services.worker.engine.onnx_runtime import load_onnx_engine
from services.worker.preparer import own_token_counter
from shared.config import Device
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
