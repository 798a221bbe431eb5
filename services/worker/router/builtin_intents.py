"""The handoff to a person that every tenant with knowledge has unless it defines its own.

"转人工" and "I want to talk to a real person" are among the first things customers write to
a support assistant, and a business that uploads only its documents and FAQ has no intent for
them: without one, the request got the fallback answer ("I don't have information about
that"). With this one it gets a handoff: the job says ``handoff: true`` and a ``job.handoff``
webhook goes out, so the business's backend can route the conversation to its people, as with
a handoff intent of its own. It is recognised by its patterns alone (no examples: a question
about a person, "who is the general manager?", is not a request for one). It is only for a
tenant that has set up no intents at all (one that has decided how a request for a person is
answered, by a handoff, a template or a ticket, keeps its own way) and none of whose FAQ
questions asks for a person ("How can I talk to a human?" answered with a phone number). A
tenant turns it off with ``builtin_handoff: false`` in its settings.
"""

from __future__ import annotations

from shared.knowledge.schemas import HandoffHandler, IntentIn, LocalizedText

BUILTIN_HANDOFF_NAME = "builtin.handoff"

BUILTIN_HANDOFF = IntentIn(
    description="The customer asks for a person (built in)",
    # the customer asking for a person, not asking about one ("人工客服几点上班？", "do you
    # offer a live agent?", "人工服务费多少钱？" are questions the knowledge answers)
    patterns=[
        r"\b(i|me|can i|could i|may i)\b.{0,25}\b(talk|speak|chat)\s+(to|with)\s+"
        r"(a|an|some|your)?\s*(real\s+|live\s+|actual\s+)?"
        r"(human|person|agent|representative|someone|staff)\b",
        r"\b(connect|transfer|put)\s+me\s+(to|through to|with)\s+(a|an|some|your)?\s*"
        r"(real\s+|live\s+)?(human|person|agent|representative|someone)\b",
        r"\b(want|need|get me|give me)\s+(a|an)\s+(real|live|actual)\s+(person|human|agent)\b",
        "(转人工|转接人工|(找|要|接)人工客服|真人客服)(?!.{0,6}(几点|时间|上班|电话|多少|费))",
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
