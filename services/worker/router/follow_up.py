"""Follow-ups that lean on the previous turn: "what about headphones?", "运费谁出？".

Such a message names no topic of its own (or only half of it), so on its own it resembles
whatever shares its one content word: "运费谁出？" after "我想退货" reads as the shipping fee,
not the return shipping it asks about. The router searches an elliptical follow-up with the
conversation first, and the message alone second; a follow-up that stands on its own ("it's
for my company and accounting wants the special VAT kind") keeps its own topic first.
"""

from __future__ import annotations

import re

from shared.knowledge.text import detect_language

# Openings that hand the topic over from the previous turn.
_EN_OPENINGS = re.compile(
    r"^\s*(?:(?:ok(?:ay)?|thanks|thank you|great|cool|right)[,.!\s]+)*"
    r"(?:and|but|also|so|then|what about|how about|what if|and if|even if|same for|"
    r"it|its|it's|that|this|they|those|these|she|he)\b",
    re.IGNORECASE,
)
_EN_CLOSINGS = re.compile(r"\b(?:too|as well|though|either|then)\W*$", re.IGNORECASE)
# a short message after another rarely states a whole topic ("how long can she use it for?")
_EN_SHORT_WORDS = 10

_ZH_OPENINGS = re.compile(r"^\s*(?:那|那么|还有|另外|如果|要是|可是|但是|而且|也|它|这个|那个)")
_ZH_CLOSINGS = re.compile(r"(?:呢|也[^，。？！,.?!]{0,6}吗)[？?！!。.]*\s*$")
_ZH_SHORT_CHARS = 6  # "周末也有人吗", "运费谁出", "会过期吗"; Chinese says much in few characters

_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def is_elliptical(message: str) -> bool:
    """Whether ``message``, sent after another, leans on it for its topic."""
    if detect_language(message) == "zh":
        return (
            len(_HAN.findall(message)) <= _ZH_SHORT_CHARS
            or bool(_ZH_OPENINGS.match(message))
            or bool(_ZH_CLOSINGS.search(message))
        )
    return (
        len(_WORD.findall(message)) <= _EN_SHORT_WORDS
        or bool(_EN_OPENINGS.match(message))
        or bool(_EN_CLOSINGS.search(message))
    )
