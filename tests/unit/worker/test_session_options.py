"""ONNX Runtime's intra-op threads spin only while a step runs: spinning on (the default) is
always paired with stopping as soon as the step returns."""

from services.worker.engine.onnx_runtime import session_options
from shared.config import Settings


def test_threads_spin_within_a_step_and_stop_when_it_returns() -> None:
    options = session_options(2, spinning=Settings().ort_thread_spinning)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert options.intra_op_num_threads == 2


def test_threads_that_do_not_spin_sleep_between_the_parts_of_a_step() -> None:
    options = session_options(0, spinning=False)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
