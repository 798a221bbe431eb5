"""The handoff to a person that every tenant with knowledge has unless it defines its own.

"转人工" and "I want to talk to a real person" are among the first things customers write to
a support assistant, and a business that uploads only its documents and FAQ has no intent for
them: without one, the request got the fallback answer ("I don't have information about
that"). With this one it gets a handoff: the job says ``handoff: true`` and a ``job.handoff``
webhook goes out, so the business's backend can route the conversation to its people, as with
a handoff intent of its own. It is recognised by its patterns alone (no examples: a question
about a person, "who is the general manager?", is not a request for one). A tenant turns it
off with ``builtin_handoff: false`` in its settings, or replaces it by defining any intent
with a ``handoff`` handler.
"""

from __future__ import annotations

from shared.knowledge.schemas import HandoffHandler, IntentIn, LocalizedText

BUILTIN_HANDOFF_NAME = "builtin.handoff"

BUILTIN_HANDOFF = IntentIn(
    description="The customer asks for a person (built in)",
    patterns=[
        r"\b(talk|speak|chat)\b.{0,20}\b(human|person|agent|representative|someone real"
        r"|staff member)\b",
        r"\b(real|live|actual)\s+(person|human|agent)\b",
        r"\b(human|customer service)\s+(agent|representative)\b",
        r"\b(need|want|get me)\s+(a|an|to)?\s*(human|representative)\b",
        "(转人工|人工客服|人工服务|找人工|要人工|接人工|真人客服|转接人工)",
    ],
    handler=HandoffHandler(
        type="handoff",
        answer=LocalizedText(
            en="Of course. I'm passing this conversation to a colleague, who will reply here "
            "as soon as possible.",
            zh="好的，正在为您转接人工客服，同事会尽快在这里回复您。",
        ),
    ),
)
