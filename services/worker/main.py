"""``chatq worker``: one inference worker process."""

from __future__ import annotations

import os
import signal
from types import FrameType

import torch

from services.worker.consumer import CeleryOutcomeSender, InferenceConsumer
from services.worker.engine import Engine, load_engine
from services.worker.inference import BatchProcessor
from services.worker.model_switch import (
    ModelSwitcher,
    ServedModel,
    load_starting_engine,
    starting_model,
)
from services.worker.prompt import PromptBuilder
from services.worker.prompt_encoder import own_token_counter
from services.worker.router.build import build_router
from services.worker.streaming import StreamPublisher, StreamRelay
from shared import metrics
from shared.config import EngineKind, get_settings
from shared.logs import configure_logging, get_logger
from shared.messaging.celery_config import make_celery

log = get_logger(__name__)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from local folders only
    settings = get_settings()
    configure_logging(settings, "worker")
    if settings.engine is not EngineKind.TORCH:
        # Beside ONNX Runtime, torch only picks tokens and copies the KV cache between runs:
        # small operations that an OpenMP team of its own makes slower, not faster, and whose
        # threads then compete with ONNX Runtime's for the same cores.
        torch.set_num_threads(1)
    serving = starting_model(settings)

    def load(model: ServedModel) -> Engine:
        return load_engine(settings, model.model_dir, label=model.label, version=model.version)

    engine, serving, failed = load_starting_engine(settings, serving, load)
    switcher = ModelSwitcher(settings, serving, load, failed=failed)
    router, registry = build_router(settings, engine.info)
    processor = BatchProcessor(
        engine=engine,
        # prompts are built on the preparer thread, beside the engine's: a tokenizer of its own
        prompts=PromptBuilder(
            settings.system_prompt, settings.max_prompt_tokens, own_token_counter(engine)
        ),
        database_url=settings.database_url,
        max_attempts=settings.max_job_attempts,
        router=router,
        registry=registry,
    )
    consumer = InferenceConsumer(
        settings,
        processor,
        CeleryOutcomeSender(make_celery(settings, "chatq-worker")),
        switch=switcher,
        relay=StreamRelay(StreamPublisher(settings)),
    )

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("worker_stopping", signal=signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    registry.start_watching(settings.knowledge_refresh_interval_s)
    switcher.start()
    metrics.serve(settings.metrics_port, settings.metrics_host, "worker")
    log.info(
        "worker_ready",
        engine=engine.info.name,
        providers=engine.info.providers,
        model=serving.label,
        version=serving.version,
    )
    del engine  # the processor holds it; after a switch nothing else may keep it alive
    consumer.run()
    switcher.stop()
    registry.stop_watching()
    log.info("worker_stopped")


if __name__ == "__main__":
    main()
