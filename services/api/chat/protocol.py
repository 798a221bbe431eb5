"""Request body of ``POST /v1/chat``: a conversation turn, answered in the same request."""

from __future__ import annotations

from services.api.jobs.protocol import ConversationIn


class ChatRequest(ConversationIn):
    stream: bool = False
    """Answer as server-sent events: ``delta`` events with the text as the model generates
    it, then ``done`` with the job (its ``response`` is the answer of record)."""
