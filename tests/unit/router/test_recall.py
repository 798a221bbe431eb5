"""What the customer was told, traced back to the tenant's own words (or not)."""

import uuid

import numpy as np

from services.worker.router.intents import CompiledIntent
from services.worker.router.recall import trace_told
from services.worker.router.tenant_knowledge import FaqRecord, TenantKnowledge
from shared.knowledge.schemas import IntentIn, TenantSettings

CANCEL = (
    "You can cancel free of charge before your order ships. Once the order has shipped it "
    "can no longer be cancelled, but you can refuse the parcel. Questions? Call 400-800-1234."
)


def intent(name: str, answer: str) -> CompiledIntent:
    definition = IntentIn.model_validate(
        {"examples": ["x"], "handler": {"type": "template", "answer": answer}}
    )
    return CompiledIntent.compile(name, definition, np.zeros((0, 384), np.float32), 0.9)


def tenant() -> TenantKnowledge:
    knowledge = TenantKnowledge(uuid.uuid4(), "shop", 1, TenantSettings())
    knowledge.faq = [FaqRecord("cancel-order", "How do I cancel?", CANCEL, "en")]
    knowledge.intents = [
        intent("hours", "我们的人工客服每天 9:00–21:00 在线，周末也不休息。电话 400-800-1234。"),
        intent("status", "Order {order_id} is on its way."),
    ]
    knowledge.sentence_chunks = {"Orders paid before 15:00 ship the same day.": 0}
    return knowledge


def test_a_whole_faq_answer_is_traced_through_the_transcripts_placeholders() -> None:
    told = trace_told(tenant(), CANCEL.replace("400-800-1234", "<PHONE_1>"))
    assert told is not None and told.route == "faq"
    assert told.source is not None and told.source.id == "cancel-order"
    # the tenant's original sentences, the phone number included
    assert told.sentences[0] == "You can cancel free of charge before your order ships."
    assert told.sentences[-1] == "Call 400-800-1234."


def test_one_sentence_said_again_is_traced_to_its_answer() -> None:
    sentence = (
        "Once the order has shipped it can no longer be cancelled, but you can refuse the parcel."
    )
    told = trace_told(tenant(), sentence)
    assert told is not None and told.route == "faq" and told.sentences == [sentence]


def test_an_intents_fixed_answer_is_traced_and_a_filled_template_is_not() -> None:
    told = trace_told(
        tenant(), "我们的人工客服每天 9:00–21:00 在线，周末也不休息。电话 <PHONE_1>。"
    )
    assert told is not None and told.route == "rule"
    assert told.source is not None and told.source.id == "hours"
    assert trace_told(tenant(), "Order 20261234 is on its way.") is None


def test_document_sentences_are_traced_and_other_words_are_not() -> None:
    told = trace_told(tenant(), "Orders paid before 15:00 ship the same day.")
    assert told is not None and told.route == "knowledge" and told.source is None
    # the model's paraphrase, or anything else the tenant never wrote
    assert trace_told(tenant(), "Orders before 3 pm go out the same day, I think.") is None
    assert (
        trace_told(tenant(), "Orders paid before 15:00 ship the same day. We also sell bikes.")
        is None
    )
