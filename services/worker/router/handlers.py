"""What a recognised intent does: a template answer, a call to the business backend (an order
look-up, say) whose JSON fills the answer, or a handoff to a person.

Calls to the backend are signed like chatq's webhooks (Standard Webhooks headers with the
submitting key's ``whsec_`` secret), so the backend can tell they come from chatq, and go
through the same address check as webhooks (no private addresses unless allowed).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from standardwebhooks import Webhook

from services.worker.router.intents import RecognisedIntent
from shared.knowledge.schemas import HttpHandler, LocalizedText, fill_template
from shared.logs import get_logger
from shared.webhook_client import WebhookClient, WebhookResponse
from shared.webhook_urls import resolve_webhook_target

log = get_logger(__name__)

USER_AGENT = "chatq-rules/1"

GENERIC_ERROR = LocalizedText(
    en="Sorry, I can't look that up right now. Please try again in a few minutes.",
    zh="抱歉，暂时无法查询，请稍后再试。",
)


@dataclass(frozen=True)
class HandlerAnswer:
    text: str
    handoff: bool = False


@dataclass
class RuleHandlers:
    allow_private: bool
    # connects only to the address it checked (no DNS rebinding), within one deadline
    client: WebhookClient

    def answer(
        self, recognised: RecognisedIntent, lang: str, signing_secret: str | None
    ) -> HandlerAnswer:
        definition = recognised.intent.definition
        missing = recognised.missing_slots
        if missing:
            ask = definition.slots[missing[0]].ask
            assert ask is not None  # required slots have one (schema)
            return HandlerAnswer(fill_template(ask.pick(lang), recognised.slots))
        handler = definition.handler
        if handler.type == "template":
            return HandlerAnswer(fill_template(handler.answer.pick(lang), recognised.slots))
        if handler.type == "handoff":
            return HandlerAnswer(
                fill_template(handler.answer.pick(lang), recognised.slots), handoff=True
            )
        return HandlerAnswer(self._call(handler, recognised, lang, signing_secret))

    def _call(
        self,
        handler: HttpHandler,
        recognised: RecognisedIntent,
        lang: str,
        signing_secret: str | None,
    ) -> str:
        slots = recognised.slots
        url = fill_template(handler.url, {k: quote(v, safe="") for k, v in slots.items()})
        # a GET carries no body: what is signed is what is sent (the empty body)
        body = (
            json.dumps(
                {"intent": recognised.intent.name, "slots": slots, "lang": lang},
                ensure_ascii=False,
            )
            if handler.method == "POST"
            else ""
        )
        started = time.perf_counter()
        error = handler.error or GENERIC_ERROR
        deadline = time.monotonic() + handler.timeout_s
        try:
            target = resolve_webhook_target(
                url, allow_private=self.allow_private, resolve_timeout_s=handler.timeout_s
            )
            response = self.client.request(
                handler.method,
                target,
                content=body.encode(),
                headers=self._headers(body, signing_secret),
                deadline=deadline,
            )
        except Exception as failure:
            # a refused URL, a timeout, a broken answer or anything else: the customer gets the
            # handler's error answer; one tenant's back end never fails the worker's batch
            log.warning("rule_call_failed", intent=recognised.intent.name, error=repr(failure))
            return fill_template(error.pick(lang), slots)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        log.info(
            "rule_called",
            intent=recognised.intent.name,
            status=response.status_code,
            elapsed_ms=elapsed_ms,
        )
        if response.status_code == 404 and handler.not_found is not None:
            return fill_template(handler.not_found.pick(lang), slots)
        fields = _json_object(response) if 200 <= response.status_code < 300 else None
        if fields is None:
            return fill_template(error.pick(lang), slots)
        return fill_template(handler.answer.pick(lang), {**fields, **slots})

    def _headers(self, body: str, secret: str | None) -> dict[str, str]:
        headers = {"user-agent": USER_AGENT, "content-type": "application/json"}
        if secret:
            message_id = f"msg_{uuid.uuid4().hex}"
            now = datetime.now(UTC)
            headers.update(
                {
                    "webhook-id": message_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": Webhook(secret).sign(message_id, now, body),
                }
            )
        return headers


def _json_object(response: WebhookResponse) -> dict[str, Any] | None:
    if not response.complete:
        return None  # longer than a look-up answer can be
    try:
        data = json.loads(response.body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    # only plain values fill a template: nested objects would print as Python reprs
    return {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}
