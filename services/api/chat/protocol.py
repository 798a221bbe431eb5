"""Request body of ``POST /v1/chat``: a conversation turn, answered in the same request."""

from __future__ import annotations

from services.api.jobs.protocol import ConversationIn


class ChatRequest(ConversationIn):
    pass
