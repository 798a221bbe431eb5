"""The router in the worker, on a real database (embedded, and Postgres) with the real
embedder: each route, tenant isolation, cache invalidation, follow-ups, Chinese."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from chatq.order_service import OrderService
from services.worker.engine import GenerationResult
from services.worker.engine.onnx_runtime import load_onnx_engine
from services.worker.inference import BatchProcessor, PreparedJobs
from services.worker.prompt import PromptBuilder
from services.worker.router.build import build_router
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Device, LogFormat, Settings
from shared.db.engine import session_scope
from shared.db.models import Job, JobStatus
from shared.knowledge import store
from shared.knowledge.schemas import DocumentIn, FaqIn, IntentIn, TenantSettings
from shared.logs import get_logger
from shared.messaging.schemas import (
    ChatTurn,
    GenerationParams,
    InferenceOutcome,
    InferenceRequest,
)
from shared.model_layout import ModelLayout
from shared.moderation import tenant_lists
from shared.moderation.tenant_lists import ModerationListIn
from tests.integration.factories import make_job
from tests.integration.test_database_error_logs import chatq_logging

pytestmark = pytest.mark.integration

SHIPPING = """# Shipping

## Delivery times
Orders placed before 3 pm ship the same day. Delivery takes 2-3 working days in mainland
cities and 5-7 working days to remote regions.

## Shipping fees
Shipping is free for orders over 99 yuan; below that it costs 10 yuan.
"""
RETURNS = """# Returns and refunds

## Returns
You can return any product within 7 days of delivery without giving a reason, as long as
the packaging is intact. Refunds reach your account within 3 working days after we receive
the parcel.
"""
RETURNS_ZH = """# 退货与退款

## 退货政策
自签收之日起7天内可无理由退货，商品包装需保持完好。我们收到退货后3个工作日内退款到原支付账户。
"""
PAYMENTS = """# Payment

## Payment methods
We accept Visa, Mastercard, Alipay and WeChat Pay. Instalments are available with Alipay
Huabei for orders over 500 yuan.
"""


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    return load_onnx_engine(ModelLayout(tiny_model_dir).onnx_dir, Device.CPU, 0, "tiny")


def router_processor(settings: Settings, engine) -> BatchProcessor:  # type: ignore[no-untyped-def]
    """The worker's preparing side with its router, as ``settings`` configure it."""
    router, registry = build_router(settings, engine.info)
    prompts = PromptBuilder("Be brief.", 512, engine.count_prompt_tokens)
    return BatchProcessor(engine, prompts, settings.database_url, router=router, registry=registry)


@pytest.fixture
def processor(backend_settings: Settings, engine) -> BatchProcessor:  # type: ignore[no-untyped-def]
    return router_processor(
        backend_settings.model_copy(update={"rule_http_allow_private": True}), engine
    )


@contextmanager
def knowledge_of(url: str, key: IssuedKey) -> Iterator[tuple[Session, uuid.UUID]]:
    """A session and the id of ``key``'s tenant, to change its knowledge."""
    with session_scope(url) as session:
        yield session, store.tenant_by_name(session, key.tenant).id


def shop(url: str, name: str = "shop") -> IssuedKey:
    key = create_api_key(url, name)
    with knowledge_of(url, key) as (session, tenant_id):
        for doc_id, text in (
            ("shipping", SHIPPING),
            ("returns", RETURNS),
            ("returns.zh", RETURNS_ZH),
            ("payment", PAYMENTS),
        ):
            title = text.splitlines()[0].lstrip("# ")
            store.put_document(session, tenant_id, doc_id, DocumentIn(title=title, text=text))
        store.put_faq(
            session,
            tenant_id,
            "reset-router",
            FaqIn(
                question="How do I reset my router?",
                answer="Hold the RESET button on the back for 5 seconds until the light flashes.",
                alternatives=["My router is stuck, how do I restart it from scratch?"],
                lang="en",
            ),
        )
        store.put_faq(
            session,
            tenant_id,
            "reset-router-zh",
            FaqIn(
                question="如何重置路由器？",
                answer="请按住路由器背面的RESET键5秒，直到指示灯闪烁。",
                lang="zh",
            ),
        )
    return key


def prepare_when_indexed(
    processor: BatchProcessor, jobs: list[tuple[str, InferenceRequest]]
) -> PreparedJobs:
    """``processor.prepare``, with the jobs that waited for their tenant's indexing resumed
    once it has ended, as the worker's preparer does."""
    prepared = processor.prepare(jobs)
    parked, prepared.parked = prepared.parked, []
    while parked:
        for waiting in parked:
            waiting.loading.result(timeout=120)
        resumed = processor.resume(parked)
        prepared.generation += resumed.generation
        prepared.finished.update(resumed.finished)
        parked = resumed.parked
    return prepared


def request_of(
    url: str,
    key: IssuedKey,
    query: str,
    history: list[tuple[str, str]] = (),  # type: ignore[assignment]
    max_new_tokens: int = 4,
) -> InferenceRequest:
    """A stored job of ``key``'s and its inference request."""
    job = make_job(url, key.id, query=query)
    return InferenceRequest(
        job_id=job.id,
        query=query,
        history=[ChatTurn(role=role, content=content) for role, content in history],  # type: ignore[arg-type]
        params=GenerationParams(max_new_tokens=max_new_tokens),
        submitted_at=job.created_at,
    )


def ask(
    processor: BatchProcessor,
    url: str,
    key: IssuedKey,
    query: str,
    history: list[tuple[str, str]] = (),  # type: ignore[assignment]
    max_new_tokens: int = 4,
) -> InferenceOutcome | str:
    """The router's outcome, or ``"model"`` when the job goes to the engine."""
    request = request_of(url, key, query, history, max_new_tokens)
    token = uuid.uuid4().hex
    prepared = prepare_when_indexed(processor, [(token, request)])
    if prepared.generation:
        return "model"
    outcome = prepared.finished[token]
    assert outcome is not None
    return outcome


def completed(outcome: InferenceOutcome | str) -> InferenceOutcome:
    assert isinstance(outcome, InferenceOutcome), outcome
    assert outcome.status == "completed"
    assert outcome.response
    return outcome


def test_a_paraphrased_faq_question_gets_the_stored_answer(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    outcome = completed(ask(processor, url, key, "how can I reset my wifi router?"))
    assert outcome.route == "faq"
    assert outcome.response.startswith("Hold the RESET button")
    assert [(s.kind, s.id) for s in outcome.sources] == [("faq", "reset-router")]
    assert outcome.timings is not None and outcome.timings.route_ms is not None

    chinese = completed(ask(processor, url, key, "路由器怎么重置？"))
    assert chinese.route == "faq"
    assert chinese.response == "请按住路由器背面的RESET键5秒，直到指示灯闪烁。"


def test_two_faq_entries_that_tie_are_both_answered(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    with knowledge_of(url, key) as (session, tenant_id):
        for faq_id, product, years in (
            ("warranty-kettle", "Kettles", "one"),
            ("warranty-router", "Routers", "two"),
            # the kettle's entry stored a second time: its answer is not said twice
            ("warranty-kettle-copy", "Kettles", "one"),
        ):
            store.put_faq(
                session,
                tenant_id,
                faq_id,
                FaqIn(
                    question="How long is the warranty?",
                    answer=f"{product} come with a {years}-year warranty.",
                    lang="en",
                ),
            )
    # the two entries rank 0.003 apart for this question: which one is meant cannot be told
    tied = completed(ask(processor, url, key, "what warranty do I get?"))
    assert tied.route == "faq"
    assert tied.response == (
        "Kettles come with a one-year warranty.\n\nRouters come with a two-year warranty."
    )
    kettle, router = tied.sources
    assert kettle.kind == router.kind == "faq"
    assert kettle.id in {"warranty-kettle", "warranty-kettle-copy"}
    assert router.id == "warranty-router"
    # a clear winner answers alone (the warranty entries rank 0.2 below it)
    alone = completed(ask(processor, url, key, "How do I reset my router?"))
    assert [s.id for s in alone.sources] == ["reset-router"]


def test_a_job_of_a_tenant_being_indexed_waits_aside_while_the_others_are_routed(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    known, new = shop(url, "known"), shop(url, "new")
    completed(ask(processor, url, known, "How do I reset my router?"))  # known: indexed now
    waiting = request_of(url, new, "How do I reset my router?")
    routed = request_of(url, known, "路由器怎么重置？")
    prepared = processor.prepare([("new", waiting), ("known", routed)])
    # the known tenant's job is answered without waiting for the new tenant's indexing
    known_outcome = prepared.finished["known"]
    assert known_outcome is not None and known_outcome.route == "faq"
    (parked,) = prepared.parked
    assert parked.job.key == "new" and "new" not in prepared.finished
    parked.loading.result(timeout=120)
    resumed = processor.resume([parked])
    assert resumed.parked == [] and resumed.generation == []
    outcome = completed(resumed.finished["new"])
    assert outcome.route == "faq" and outcome.response.startswith("Hold the RESET button")
    with session_scope(url) as session:  # claimed once: resuming does not claim it again
        job = session.get(Job, waiting.job_id)
        assert job is not None and (job.status, job.attempts) == (JobStatus.IN_PROGRESS, 1)


def test_another_tenants_knowledge_never_answers(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    shop(url)
    stranger = create_api_key(url, "school")
    outcome = completed(ask(processor, url, stranger, "How do I reset my router?"))
    assert outcome.route == "fallback"
    assert "RESET" not in outcome.response
    assert outcome.sources == []


def test_a_document_answers_in_the_language_of_the_question(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    english = completed(ask(processor, url, key, "How many days do I have to return something?"))
    assert english.route == "knowledge"
    assert english.sources[0].id == "returns"
    assert "7 days" in english.response

    chinese = completed(ask(processor, url, key, "收到货以后几天内可以退货？"))
    assert chinese.route == "knowledge"
    assert chinese.sources[0].id == "returns.zh"
    assert "7天" in chinese.response


def test_a_follow_up_is_answered_with_the_conversation(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    history = [
        ("user", "How long does delivery take?"),
        ("assistant", "Delivery takes 2-3 working days in mainland cities."),
    ]
    outcome = completed(ask(processor, url, key, "and what if I order at 3 pm?", history))
    assert outcome.route == "knowledge"
    assert outcome.sources[0].id == "shipping"
    assert "3 pm" in outcome.response


CANCEL_ANSWER = (
    "You can cancel free of charge before your order ships: open My Orders and select Cancel "
    "order. Once the order has shipped it can no longer be cancelled, but you can refuse the "
    "parcel or return it within 7 days of delivery."
)


def add_cancel_faq(url: str, key: IssuedKey) -> None:
    with session_scope(url) as session:
        store.put_faq(
            session,
            store.tenant_by_name(session, key.tenant).id,
            "cancel-order",
            FaqIn(question="How do I cancel my order?", answer=CANCEL_ANSWER, lang="en"),
        )


def shipped_after_cancelling(
    processor: BatchProcessor, url: str, key: IssuedKey, said: str
) -> InferenceOutcome:
    """ "it already shipped yesterday though", after asking to cancel and being told ``said``."""
    history = [("user", "I want to cancel my order."), ("assistant", said)]
    return completed(ask(processor, url, key, "it already shipped yesterday though", history))


@pytest.fixture
def cancelling_shop(backend_settings: Settings) -> tuple[str, IssuedKey]:
    """The shop's database URL and key, its FAQ holding the cancellation answer."""
    url = backend_settings.database_url
    key = shop(url)
    add_cancel_faq(url, key)
    return url, key


def test_a_follow_up_about_what_the_customer_was_just_told_gets_that_sentence_again(
    cancelling_shop: tuple[str, IssuedKey], processor: BatchProcessor
) -> None:
    url, key = cancelling_shop
    outcome = shipped_after_cancelling(processor, url, key, CANCEL_ANSWER)
    assert outcome.route == "faq"
    assert outcome.response == (
        "Once the order has shipped it can no longer be cancelled, but you can refuse the "
        "parcel or return it within 7 days of delivery."
    )
    assert [(s.kind, s.id) for s in outcome.sources] == [("faq", "cancel-order")]

    # an intent's fixed answer is the tenant's own words too
    hours = (
        "Our customer service answers every day from 9:00 to 21:00, weekends included. "
        "Our phone line is 400-800-1234."
    )
    with session_scope(url) as session:
        store.put_intent(
            session,
            store.tenant_by_name(session, key.tenant).id,
            "hours",
            IntentIn.model_validate(
                {
                    "examples": ["When are you open?", "What are your opening hours?"],
                    "handler": {"type": "template", "answer": hours},
                }
            ),
        )
    # as the transcript gives it back: anonymised
    stored = hours.replace("400-800-1234", "<PHONE_1>")
    history = [("user", "When is your customer service open?"), ("assistant", stored)]
    weekend = completed(ask(processor, url, key, "on weekends too?", history))
    assert weekend.route == "rule"
    assert weekend.response == (
        "Our customer service answers every day from 9:00 to 21:00, weekends included."
    )
    assert [(s.kind, s.id) for s in weekend.sources] == [("intent", "hours")]
    assert weekend.intent is None  # nothing was recognised: the answer was recalled


def test_a_follow_up_never_recalls_words_that_were_not_the_tenants(
    cancelling_shop: tuple[str, IssuedKey], processor: BatchProcessor
) -> None:
    url, key = cancelling_shop
    # the model's paraphrase of the FAQ, not the FAQ's own words: nothing vouches for it
    said = (
        "Cancelling is free until it ships. Once your order has shipped it can no longer be "
        "cancelled; just refuse the parcel at the door."
    )
    outcome = shipped_after_cancelling(processor, url, key, said)
    assert "refuse the parcel at the door" not in outcome.response


def test_a_knowledge_change_invalidates_cached_answers(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    question = "Which payment methods do you accept?"
    first = completed(ask(processor, url, key, question))
    assert first.route == "knowledge" and "Alipay" in first.response
    again = completed(ask(processor, url, key, "which payment methods do you accept"))
    assert again.route == "cache"
    assert again.response == first.response
    assert processor.router is not None and processor.router.cache.hit_rate == 0.5

    with knowledge_of(url, key) as (session, tenant_id):
        store.put_document(
            session,
            tenant_id,
            "payment",
            DocumentIn(
                title="Payment",
                text="# Payment\n\n## Payment methods\nWe accept PayPal and bank transfer only.",
            ),
        )
    after = completed(ask(processor, url, key, question))
    assert after.route == "knowledge"
    assert "PayPal" in after.response and "Alipay" not in after.response


def test_nothing_relevant_gets_the_tenants_fallback_not_an_invented_answer(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    store.configure_tenant(
        url,
        key.tenant,
        TenantSettings.model_validate(
            {
                "fallback_answer": {
                    "en": "I don't know; write to help@shop.example.",
                    "zh": "抱歉，请联系客服。",
                }
            }
        ),
    )
    english = completed(ask(processor, url, key, "What is the name of your CEO's dog?"))
    assert english.route == "fallback"
    assert english.response == "I don't know; write to help@shop.example."
    chinese = completed(ask(processor, url, key, "你们老板的狗叫什么名字？"))
    assert chinese.route == "fallback"
    assert chinese.response == "抱歉，请联系客服。"


def answered_with(
    settings: Settings, engine, key: IssuedKey, question: str, **overrides: float
) -> InferenceOutcome:  # type: ignore[no-untyped-def]
    """``question`` answered by a router built with ``overrides`` of ``settings``."""
    processor = router_processor(settings.model_copy(update=overrides), engine)
    return completed(ask(processor, settings.database_url, key, question))


def test_a_passage_just_short_of_the_threshold_follows_the_fallback_as_related(
    backend_settings: Settings, engine
) -> None:  # type: ignore[no-untyped-def]
    key = shop(backend_settings.database_url)

    def asked_with(question: str, **settings: float) -> InferenceOutcome:
        return answered_with(backend_settings, engine, key, question, **settings)

    # "Can I pay by card?" finds the payment passage with evidence 0.886: a threshold of 0.90
    # misses it by 0.014, within the default margin of 0.03; 0.95 misses it by 0.064
    card = "Can I pay by card?"
    near = asked_with(card, knowledge_threshold=0.90)
    assert near.route == "fallback"  # not an answer: the customer is told we do not know
    fallback, related = near.response.split("\n\n", 1)
    assert fallback.startswith("I'm sorry, I don't have information about that.")
    assert related.startswith("This is the closest I found in our information")
    assert "Visa" in related
    assert [(s.kind, s.id) for s in near.sources][:1] == [("document", "payment")]

    far = asked_with(card, knowledge_threshold=0.95)
    assert far.route == "fallback" and far.sources == []
    assert "Visa" not in far.response and far.response == fallback

    switched_off = asked_with(card, knowledge_threshold=0.90, related_passage_margin=0.0)
    assert switched_off.sources == [] and switched_off.response == fallback

    # with the defaults, in Chinese: "不想要了可以退吗？" finds the Chinese returns passage at
    # 0.880, 0.020 short of the Chinese threshold
    chinese = asked_with("不想要了可以退吗？")
    assert chinese.route == "fallback"
    fallback_zh, related_zh = chinese.response.split("\n\n", 1)
    assert fallback_zh.startswith("抱歉，我暂时没有这方面的信息")
    assert related_zh.startswith("以下是我们资料中最接近的内容") and "7天内" in related_zh
    assert [(s.kind, s.id) for s in chinese.sources] == [("document", "returns.zh")]


def test_words_shared_with_the_question_lift_the_best_passage_only_so_far(
    backend_settings: Settings, engine
) -> None:  # type: ignore[no-untyped-def]
    key = shop(backend_settings.database_url)
    # "Can I pay by card?" finds the payment passage at cosine 0.851 with lexical coverage
    # 0.36: evidence 0.886, of which the default cap lets 0.01 count towards answering
    card = "Can I pay by card?"
    capped = answered_with(backend_settings, engine, key, card, knowledge_threshold=0.87)
    assert capped.route == "fallback"  # 0.861 < 0.87: offered after the don't-know
    fallback, related = capped.response.split("\n\n", 1)
    assert fallback.startswith("I'm sorry, I don't have information about that.")
    assert "Visa" in related
    assert [(s.kind, s.id) for s in capped.sources][:1] == [("document", "payment")]

    uncapped = answered_with(
        backend_settings, engine, key, card, knowledge_threshold=0.87, knowledge_lexical_cap=1.0
    )
    assert uncapped.route == "knowledge" and "Visa" in uncapped.response
    assert not uncapped.response.startswith("I'm sorry")


def test_the_model_answers_alone_only_where_the_tenant_allows_it(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    question = "Write me a poem about the sea."
    assert completed(ask(processor, url, key, question)).route == "fallback"
    store.configure_tenant(url, key.tenant, TenantSettings(llm_fallback=True))
    assert ask(processor, url, key, question) == "model"


@pytest.fixture
def orders() -> Iterator[OrderService]:
    with OrderService(
        {"20261234": {"order_id": "20261234", "status": "shipped", "status_en": "on its way"}}
    ) as service:
        yield service


def add_intents(url: str, key: IssuedKey, orders_url: str) -> None:
    intents = {
        "order_status": {
            "description": "Order status look-up",
            "examples": ["Where is my order?", "我的订单到哪了？", "track my parcel"],
            "patterns": [r"\border\b.*\b(status|where)", "订单.*(到哪|状态)"],
            "slots": {
                "order_id": {
                    "pattern": r"(?<!\d)(\d{8})(?!\d)",
                    "required": True,
                    "ask": {"en": "What is your order number?", "zh": "请提供订单号。"},
                }
            },
            "handler": {
                "type": "http",
                "url": orders_url + "/orders/{order_id}",
                "answer": {
                    "en": "Order {order_id} is {status_en}.",
                    "zh": "订单{order_id}：{status}",
                },
                "not_found": {"en": "I can't find order {order_id}."},
            },
        },
        "human": {
            "examples": ["I want to talk to a real person"],
            "keywords": ["转人工", "human agent"],
            "handler": {
                "type": "handoff",
                "answer": {"en": "A colleague will take over.", "zh": "正在为您转接人工客服。"},
            },
        },
        "hours": {
            "examples": ["When are you open?", "What are your opening hours?"],
            "handler": {"type": "template", "answer": "We answer every day from 9:00 to 21:00."},
        },
    }
    with knowledge_of(url, key) as (session, tenant_id):
        for name, definition in intents.items():
            store.put_intent(session, tenant_id, name, IntentIn.model_validate(definition))


def test_an_order_status_rule_calls_the_backend_signed_and_fills_the_answer(
    backend_settings: Settings, processor: BatchProcessor, orders: OrderService
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    add_intents(url, key, orders.url)
    outcome = completed(ask(processor, url, key, "Where is my order 20261234? status please"))
    assert outcome.route == "rule"
    assert outcome.response == "Order 20261234 is on its way."
    assert outcome.intent is not None
    assert outcome.intent.name == "order_status"
    assert outcome.intent.slots == {"order_id": "20261234"}
    request = orders.requests[-1]
    headers = {k.lower(): v for k, v in request.headers.items()}
    # a GET signs its (empty) body like a webhook: id.timestamp.body with the key's secret
    signed_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    expected = Webhook(key.webhook_secret).sign(headers["webhook-id"], signed_at, "")
    assert headers["webhook-signature"] == expected

    unknown = completed(ask(processor, url, key, "order status of 20269999?"))
    assert unknown.response == "I can't find order 20269999."


def test_what_the_worker_logs_while_routing_a_job_names_the_job(
    backend_settings: Settings,
    processor: BatchProcessor,
    orders: OrderService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    add_intents(url, key, orders.url)
    with chatq_logging(backend_settings, LogFormat.JSON):
        outcome = completed(ask(processor, url, key, "Where is my order 20261234? status please"))
        get_logger("test").info("after_the_batch")
    assert outcome.route == "rule"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line[:1] == "{"]
    called = [line for line in lines if line["event"] == "rule_called"]
    assert [line["job_id"] for line in called] == [str(outcome.job_id)]
    after = next(line for line in lines if line["event"] == "after_the_batch")
    assert "job_id" not in after  # unbound once the job is prepared


def test_a_missing_slot_is_asked_for_and_the_next_turn_completes_the_intent(
    backend_settings: Settings, processor: BatchProcessor, orders: OrderService
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    add_intents(url, key, orders.url)
    asked = completed(ask(processor, url, key, "我的订单到哪了？"))
    assert asked.route == "rule" and asked.response == "请提供订单号。"
    history = [("user", "我的订单到哪了？"), ("assistant", asked.response)]
    answered = completed(ask(processor, url, key, "20261234", history))
    assert answered.route == "rule"
    assert answered.response == "订单20261234：shipped"


def test_handoff_and_template_intents(
    backend_settings: Settings, processor: BatchProcessor, orders: OrderService
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    add_intents(url, key, orders.url)
    handoff = completed(ask(processor, url, key, "转人工"))
    assert handoff.route == "rule" and handoff.handoff
    assert handoff.response == "正在为您转接人工客服。"
    hours = completed(ask(processor, url, key, "what are your opening hours?"))
    assert hours.route == "rule" and not hours.handoff
    assert hours.intent is not None and hours.intent.name == "hours"


def test_a_tenant_with_knowledge_but_no_handoff_intent_hands_a_request_for_a_person_over(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)  # documents and FAQ, no intents
    chinese = completed(ask(processor, url, key, "你根本听不懂，给我转人工"))
    assert chinese.route == "rule" and chinese.handoff
    assert chinese.intent is not None and chinese.intent.name == "builtin.handoff"
    assert "转接人工客服" in chinese.response
    english = completed(ask(processor, url, key, "can I speak to an actual human?"))
    assert english.handoff and "colleague" in english.response
    # a question about a person is not a request for one
    for question in ("who is your general manager?", "人工客服几点上班？"):
        assert not completed(ask(processor, url, key, question)).handoff, question

    # a tenant that set up intents of its own keeps its own way of answering
    with knowledge_of(url, key) as (session, tenant_id):
        store.put_intent(
            session,
            tenant_id,
            "hours",
            IntentIn.model_validate(
                {
                    "keywords": ["opening hours"],
                    "handler": {"type": "template", "answer": "9:00-21:00"},
                }
            ),
        )
    assert not completed(ask(processor, url, key, "你根本听不懂，给我转人工")).handoff
    with knowledge_of(url, key) as (session, tenant_id):
        store.delete_intent(session, tenant_id, "hours")

    store.configure_tenant(url, key.tenant, TenantSettings(builtin_handoff=False))
    turned_off = completed(ask(processor, url, key, "你根本听不懂，给我转人工"))
    assert not turned_off.handoff and turned_off.route == "fallback"

    # a tenant with nothing to answer from gets no built-in intent either
    bare = create_api_key(url, "bare")
    outcome = ask(processor, url, bare, "给我转人工")
    assert outcome == "model" or not completed(outcome).handoff


def test_without_a_configured_fallback_the_contact_in_the_documents_is_named(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = shop(url)
    with knowledge_of(url, key) as (session, tenant_id):
        contact = "# Contact\n\n## Customer service\nNeed help? Email care@shop.example."
        store.put_document(session, tenant_id, "contact", DocumentIn(title="Contact", text=contact))
    outcome = completed(ask(processor, url, key, "What is the name of your CEO's dog?"))
    assert outcome.route == "fallback"
    assert "care@shop.example" in outcome.response


def moderated_shop(url: str, actions: dict[str, str]) -> IssuedKey:
    key = shop(url)
    with knowledge_of(url, key) as (session, tenant_id):
        store.put_settings(
            session,
            tenant_id,
            TenantSettings.model_validate(
                {
                    "llm_fallback": True,
                    "moderation": {
                        "actions": actions,
                        "safe_answer": {"en": "Please stay polite.", "zh": "请文明用语。"},
                    },
                }
            ),
        )
        tenant_lists.put_list(
            session,
            tenant_id,
            "competitors",
            ModerationListIn(category="custom", terms=["CompetitorMart"]),
        )
    return key


def test_a_blocked_question_reaches_neither_rules_nor_the_model(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = moderated_shop(url, {"profanity": "block", "abuse": "block"})
    english = completed(ask(processor, url, key, "How do I reset my f.u.c.k.i.n.g router?"))
    assert (english.route, english.response) == ("moderation", "Please stay polite.")
    assert english.moderation is not None
    assert english.moderation["stage"] == "input" and english.moderation["action"] == "block"
    assert english.sources == []

    chinese = completed(ask(processor, url, key, "你们这帮傻 逼，路由器怎么重置？"))
    assert (chinese.route, chinese.response) == ("moderation", "请文明用语。")


def test_a_masked_question_reaches_the_model_masked(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = moderated_shop(url, {"custom": "mask"})
    request = request_of(url, key, "Is CompetitorMart cheaper than you for a laptop?", [], 2)
    prepared = prepare_when_indexed(processor, [("masked", request)])
    (generation,) = prepared.generation
    prompt = " ".join(message["content"] for message in generation.messages)
    assert "CompetitorMart" not in prompt and "Is *** cheaper" in prompt
    the_outcome = processor.completed(
        request,
        GenerationResult(
            request_id="masked",
            text="An answer.",
            prompt_tokens=10,
            completion_tokens=2,
            finish_reason="stop",
            batch_size=1,
            inference_ms=1.0,
        ),
        request.submitted_at,
    )
    assert the_outcome.moderation is not None
    assert the_outcome.moderation["action"] == "mask"
    assert the_outcome.moderation["categories"] == ["custom"]


def test_an_innocent_question_is_not_moderated(
    backend_settings: Settings, processor: BatchProcessor
) -> None:
    url = backend_settings.database_url
    key = moderated_shop(url, {"profanity": "block", "abuse": "block", "violence": "block"})
    outcome = completed(ask(processor, url, key, "How do I kill the process that hangs my router?"))
    assert outcome.route != "moderation"
    chinese = completed(ask(processor, url, key, "操作系统升级后路由器怎么重置？"))
    assert chinese.route != "moderation"
    assert chinese.moderation is not None and chinese.moderation["flagged"] is False
