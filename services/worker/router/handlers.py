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

import httpx
from standardwebhooks import Webhook

from services.worker.router.intents import RecognisedIntent
from shared.knowledge.schemas import HttpHandler, LocalizedText, fill_template
from shared.logs import get_logger
from shared.webhook_urls import WebhookUrlError, check_webhook_url

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
    client: httpx.Client

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
        try:
            check_webhook_url(url, allow_private=self.allow_private)
            response = self.client.request(
                handler.method,
                url,
                content=body if handler.method == "POST" else None,
                headers=self._headers(body, signing_secret),
                timeout=handler.timeout_s,
            )
        except (httpx.HTTPError, WebhookUrlError) as failure:
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
        fields = _json_object(response) if response.is_success else None
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


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    # only plain values fill a template: nested objects would print as Python reprs
    return {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}
