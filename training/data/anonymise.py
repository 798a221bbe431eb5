"""Personal data out of training examples, with the product's own anonymiser.

Every turn of an example goes through ``shared.pii.Anonymizer`` with one ``PlaceholderMap`` per
example, so a phone number the customer gives twice is ``<PHONE_1>`` both times, exactly as
the product stores conversations. The map's key is a fresh random secret: training keeps no map,
so nothing could be looked up with it later.

Public values are kept: a value that is one of the example's ``facts`` (what a correct answer
must state, such as the shop's support line) or one of ``keep_values`` (the tenant's public
e-mail address, phone number, router address). Without that, every "please call 400-800-1234"
answer would teach the model to say ``<PHONE_1>``.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable

from shared.pii import Anonymizer, PlaceholderMap
from training.data.examples import ChatExample, ChatTurn

_SEPARATORS = re.compile(r"[\s\-.()/]+")


def _comparable(value: str) -> str:
    """One spelling of a value for comparing a found span with a kept value."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).casefold()


class ExampleAnonymiser:
    def __init__(self, anonymizer: Anonymizer, keep_values: Iterable[str] = ()) -> None:
        self._anonymizer = anonymizer
        self._keep = frozenset(_comparable(value) for value in keep_values if value.strip())

    def anonymise(self, example: ChatExample) -> ChatExample:
        """``example`` with personal data replaced by placeholders (the same object when it holds
        none)."""
        keep = self._keep | {_comparable(fact) for fact in example.facts if fact.strip()}
        placeholders = PlaceholderMap(secrets.token_bytes(32))
        turns = [
            ChatTurn(role=turn.role, content=self._text(turn.content, placeholders, keep))
            for turn in example.messages
        ]
        if all(
            new.content == old.content for new, old in zip(turns, example.messages, strict=True)
        ):
            return example
        return example.model_copy(update={"messages": turns})

    def _text(self, text: str, placeholders: PlaceholderMap, keep: frozenset[str]) -> str:
        kept = [
            span
            for span in self._anonymizer.find(text)
            if _comparable(text[span.start : span.end]) in keep
        ]
        if not kept:
            return self._anonymizer.anonymize(text, placeholders)
        # The pieces between kept values go through the anonymiser one by one, so the
        # placeholders are the product's (its canonical values, its numbering).
        pieces: list[str] = []
        position = 0
        for span in kept:
            pieces.append(self._anonymizer.anonymize(text[position : span.start], placeholders))
            pieces.append(text[span.start : span.end])
            position = span.end
        pieces.append(self._anonymizer.anonymize(text[position:], placeholders))
        return "".join(pieces)
