"""Whether an answer states the facts a correct answer must (``ChatExample.facts``).

Both texts are normalised alike before a fact is looked for: NFKC (full-width letters, digits
and punctuation become half-width; the ideographic space a plain one, as ``chatq eval``
does), case-folded, dashes made hyphens ("2–4 days" is "2-4 days"), runs of whitespace made
one space, and the spaces beside Chinese and Japanese characters dropped (writers and models
put "7 天" and "7天" alike).

A fact that starts or ends with a digit must not continue a number in the answer: "7" is not
stated by "17 days", "70", "1.7" or "7,000".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from chatq.evaluation.scoring import normalise as nfkc

# CJK punctuation, kana, ideographs (and extension A), compatibility ideographs, Hangul.
_CJK = "\u3001-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_SPACE_BESIDE_CJK = re.compile(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])")
_WHITESPACE = re.compile(r"\s+")
# hyphens, en and em dashes, the minus sign: "2–4 days" is written "2-4 days" as often
_DASHES = str.maketrans(
    dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63", "-")
)
# a digit just before, or a digit and a decimal or thousands separator ("1.7", "1,7")
_NUMBER_BEFORE = r"(?<!\d)(?<!\d[.,])"
# a digit just after, or a separator and a digit ("7.5", "7,000")
_NUMBER_AFTER = r"(?![.,]?\d)"


class BlankFactError(ValueError):
    """A fact with nothing in it once normalised: every answer would state it."""


def normalise_for_facts(text: str) -> str:
    """``text`` as facts are matched against it (see the module docstring)."""
    # NFKC again after casefold: case folding can produce characters NFKC would still change
    folded = unicodedata.normalize("NFKC", nfkc(text).casefold()).translate(_DASHES)
    return _WHITESPACE.sub(" ", _SPACE_BESIDE_CJK.sub("", folded)).strip()


@lru_cache(maxsize=4096)
def fact_pattern(fact: str) -> re.Pattern[str]:
    """The pattern that finds ``fact`` in a normalised answer."""
    body = normalise_for_facts(fact)
    if not body:
        raise BlankFactError(f"the fact {fact!r} is blank: every answer would state it")
    before = _NUMBER_BEFORE if body[0].isdigit() else ""
    after = _NUMBER_AFTER if body[-1].isdigit() else ""
    return re.compile(before + re.escape(body) + after)


def facts_stated(answer: str, facts: Sequence[str]) -> list[str]:
    """The facts of ``facts`` that ``answer`` states, in their order."""
    text = normalise_for_facts(answer)
    return [fact for fact in facts if fact_pattern(fact).search(text)]
