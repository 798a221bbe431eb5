"""How to reach a person, found in the tenant's own knowledge.

A tenant that set no ``fallback_answer`` still deserves a fallback that says how to reach
customer service; its documents and FAQ usually say it ("email support@… or call 400-…").
Email addresses are ranked by how often they are written, more for one that reads like a
service desk or stands next to an offer of help; phone numbers by how often they are written
next to a word that announces one ("call", "phone", "电话", "致电", …), so dates and order
numbers, which look like digits too, are not taken.

Up to two of each are named. A business often has more than one desk (a hotel's front desk
and its reservations team), and which one a customer's unanswerable question belongs to is
not knowable; naming both costs a few words, naming the wrong one leaves the customer stuck.
A second address is named only when it reads like a desk itself ("reservations@"), never a
login or an example address that the documents happen to mention often ("netid@").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from shared.knowledge.schemas import LocalizedText

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(
    r"(?:call|phone|tel\.?|telephone|hotline|电话|致电|拨打|热线)\D{0,24}?"
    r"(\+?\d[\d ()-]{5,18}\d(?:\s*(?:ext\.?|分机)\s*\d{1,6})?)",
    re.IGNORECASE,
)


MOST_NAMED = 2


@dataclass(frozen=True)
class Contact:
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()

    def fallback(self) -> LocalizedText | None:
        """A don't-know answer that names the contacts, or ``None`` without one."""
        ways_en = [f"email {' or '.join(self.emails)}"] if self.emails else []
        ways_en += [f"call {' or '.join(self.phones)}"] if self.phones else []
        ways_zh = [f"发邮件至 {' 或 '.join(self.emails)}"] if self.emails else []
        ways_zh += [f"致电 {' 或 '.join(self.phones)}"] if self.phones else []
        if not ways_en:
            return None
        return LocalizedText(
            en="I'm sorry, I don't have information about that. To reach our customer "
            f"service, {', or '.join(ways_en)}.",
            zh="抱歉，我暂时没有这方面的信息。如需人工帮助，"
            f"请{'，或'.join(ways_zh)} 联系我们的客服。",
        )


# An address that reads like a service desk, or is written next to words that offer help, is
# the one to give (a university's "netid@" is mentioned often, but "helpdesk@" is the contact).
SERVICE_NAME = re.compile(
    r"support|help|service|contact|care|info|kefu|hello|desk|reception|reservation|booking"
    r"|enquir|inquir|office|admission",
    re.IGNORECASE,
)
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
    ranked_emails = [address for address, _ in emails.most_common()]
    # the first is the best we have; a second must read like a desk on its own
    named = ranked_emails[:1] + [
        address for address in ranked_emails[1:] if SERVICE_NAME.search(address.split("@")[0])
    ]
    return Contact(
        emails=tuple(named[:MOST_NAMED]),
        phones=tuple(number for number, _ in phones.most_common(MOST_NAMED)),
    )
