"""How to reach a person, found in the tenant's own knowledge.

A tenant that set no ``fallback_answer`` still deserves a fallback that says how to reach
customer service; its documents and FAQ usually say it ("email support@… or call 400-…").
The most frequent email address and the most frequent phone number written next to a word
that announces one ("call", "phone", "电话", "致电", …) are taken; dates and order numbers,
which look like digits too, are not next to such words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from shared.knowledge.schemas import LocalizedText

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?:call|phone|tel\.?|telephone|hotline|电话|致电|拨打|热线)\D{0,12}?"
    r"(\+?\d[\d ()-]{5,18}\d(?:\s*(?:ext\.?|分机)\s*\d{1,6})?)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Contact:
    email: str | None
    phone: str | None

    def fallback(self) -> LocalizedText | None:
        """A don't-know answer that names the contact, or ``None`` without one."""
        ways_en = " or ".join(w for w in (self.email, self.phone and f"call {self.phone}") if w)
        ways_zh = " 或 ".join(w for w in (self.email, self.phone and f"致电 {self.phone}") if w)
        if not ways_en:
            return None
        return LocalizedText(
            en=(
                "I'm sorry, I don't have information about that. To reach our customer "
                f"service, email {ways_en}."
                if self.email
                else "I'm sorry, I don't have information about that. To reach our customer "
                f"service, {ways_en}."
            ),
            zh=f"抱歉，我暂时没有这方面的信息。如需人工帮助，请通过 {ways_zh} 联系我们的客服。",
        )


# An address that reads like a service desk, or is written next to words that offer help, is
# the one to give (a university's "netid@" is mentioned often, but "helpdesk@" is the contact).
SERVICE_NAME = re.compile(r"support|help|service|contact|care|info|kefu|hello", re.IGNORECASE)
SERVICE_CONTEXT = re.compile(
    r"contact|reach|support|help|customer service|email us|write to|联系|客服|人工|咨询",
    re.IGNORECASE,
)


def find_contact(texts: Iterable[str]) -> Contact:
    emails: Counter[str] = Counter()
    phones: Counter[str] = Counter()
    for text in texts:
        for match in EMAIL.finditer(text):
            context = text[max(0, match.start() - 60) : match.end() + 20]
            weight = 1 + 2 * bool(SERVICE_NAME.search(match.group(0).split("@")[0]))
            weight += 2 * bool(SERVICE_CONTEXT.search(context))
            emails[match.group(0).lower()] += weight
        phones.update(" ".join(match.split()) for match in PHONE.findall(text))
    return Contact(
        email=emails.most_common(1)[0][0] if emails else None,
        phone=phones.most_common(1)[0][0] if phones else None,
    )
