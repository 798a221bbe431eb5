"""Text normalisation for matching, with a map from every normalised position back to the
original text (so a mask lands on the characters the customer typed).

The steps, in order:

1. per character: NFKC (full-width → half-width, ligatures, circled and mathematical letters),
   case folding, traditional → simplified Chinese (OpenCC's ``t2s`` table, character by
   character so positions stay one to one) and a few variant characters;
2. separators inserted to break a word are dropped: between single Latin letters
   ("f.u.c.k", "f u c k") and between two Chinese characters ("傻 逼", "傻*逼");
3. leetspeak inside a word (4→a, 3→e, 1→i, 0→o, 5→s, 7→t, @→a, $→s, ! between letters → i);
   digits only in a token with at least two letters, so "A55" (a phone) or "455" stay digits;
4. runs of one character collapse to one ("fuuuuck" → "fuck"); the run lengths are kept so a
   term with a double letter ("ass") is not found in the shorter word ("as").

Terms are normalised with the same function, so a list entry written "sh1t" or "傻 逼" means
what the text would have to say.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import opencc

# Characters that OpenCC's t2s leaves alone but that customers use for the simplified form.
_VARIANTS = {"妳": "你", "祢": "你", "擼": "撸", "屌": "屌"}
# Inserted between letters to dodge a filter; natural Chinese punctuation (，。！) is not here.
_SEPARATORS = r"\s.\-_*~+/\\|·•'`^=#:,"
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SPACED_LETTERS = re.compile(
    rf"(?<![a-z0-9])[a-z0-9](?:[{_SEPARATORS}]{{1,3}}[a-z0-9](?![a-z0-9])){{2,}}"
)
_SPACED_HAN = re.compile(rf"(?<=[{_HAN}])[{_SEPARATORS}]{{1,3}}(?=[{_HAN}])")
_SEPARATOR = re.compile(rf"[{_SEPARATORS}]")
# a word holding a digit or symbol that leetspeak uses (most words hold none: skipped in C)
_LEET_TOKEN = re.compile(r"(?<![a-z0-9@$!])[a-z0-9@$!]*[013457@$!][a-z0-9@$!]*")
_LEET_DIGITS = {"i": str.maketrans("431057", "aeiost"), "l": str.maketrans("431057", "aelost")}
_LEET_SYMBOLS = {"@": "a", "$": "s", "!": "i"}
_REPEATS = re.compile(r"(.)\1+", re.DOTALL)
_HAN_RE = re.compile(rf"[{_HAN}]")


def is_han(char: str) -> bool:
    return bool(_HAN_RE.match(char))


def is_latin_word_char(char: str) -> bool:
    """A letter or digit of an alphabetic script: English terms need one of these NOT to stand
    right before or after them ("class" holds "ass"), a Chinese character does not count."""
    return char.isalnum() and not is_han(char)


@cache
def _t2s_table() -> dict[int, str]:
    """OpenCC's traditional → simplified conversion, one character at a time (4,000-odd
    entries; built in ~5 ms): converting each character alone keeps positions one to one."""
    chars = [
        chr(code)
        for start, end in ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0xF900, 0xFB00))
        for code in range(start, end)
    ]
    converted = opencc.OpenCC("t2s").convert("\n".join(chars)).split("\n")
    table = {
        ord(before): after
        for before, after in zip(chars, converted, strict=True)
        if before != after and len(after) == 1
    }
    table.update({ord(k): v for k, v in _VARIANTS.items()})
    return table


_CHAR_CACHE: dict[str, str] = {}


def _fold_char(char: str) -> str:
    folded = _CHAR_CACHE.get(char)
    if folded is None:
        folded = unicodedata.normalize("NFKC", char).casefold()
        folded = unicodedata.normalize("NFKC", folded).translate(_t2s_table())
        if len(_CHAR_CACHE) < 100_000:  # bounded: an attacker can send every code point
            _CHAR_CACHE[char] = folded
    return folded


@dataclass(frozen=True, slots=True)
class Normalised:
    """``text`` is what the matcher searches: normalised and run-collapsed."""

    text: str
    plain: str
    """Before run collapsing: folded, separators dropped, leetspeak read (what the classifier
    scores: "f.u.c.k" and "ｆｕｃｋ" are the word it knows)."""
    origin: Sequence[int]
    """For each character of ``plain``: the index of the original character it came from."""
    repeat_positions: tuple[int, ...]
    """Positions in ``text`` that stand for a run of two or more characters of ``plain``…"""
    repeat_lengths: tuple[int, ...]
    """… and how long each run is."""
    repeat_offsets: tuple[int, ...]
    """How many characters runs before each of those positions removed."""

    def run_length(self, position: int) -> int:
        """How many characters of ``plain`` ``text[position]`` stands for."""
        index = bisect_left(self.repeat_positions, position)
        if index < len(self.repeat_positions) and self.repeat_positions[index] == position:
            return self.repeat_lengths[index]
        return 1

    def _plain_start(self, position: int) -> int:
        index = bisect_left(self.repeat_positions, position)
        removed = self.repeat_offsets[index] if index < len(self.repeat_offsets) else self._removed
        return position + removed

    @property
    def _removed(self) -> int:
        if not self.repeat_positions:
            return 0
        return self.repeat_offsets[-1] + self.repeat_lengths[-1] - 1

    def plain_span(self, start: int, end: int) -> tuple[int, int]:
        """The characters of ``plain`` behind ``text[start:end]``."""
        return self._plain_start(start), self._plain_start(end - 1) + self.run_length(end - 1)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original characters behind ``text[start:end]``."""
        plain_start, plain_end = self.plain_span(start, end)
        return self.origin[plain_start], self.origin[plain_end - 1] + 1


def _fold(text: str) -> tuple[str, Sequence[int]]:
    """Step 1; returns the folded text and, for each of its characters, the original index."""
    if text.isascii():  # the common case: NFKC is the identity, one char stays one char
        return text.lower(), range(len(text))
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = _fold_char(char)
        chars.append(folded)
        if len(folded) == 1:
            origin.append(index)
        else:
            origin.extend([index] * len(folded))
    return "".join(chars), origin


def _drop_separators(text: str, origin: Sequence[int]) -> tuple[str, Sequence[int]]:
    """Step 2."""
    drop: list[tuple[int, int]] = []
    for match in _SPACED_LETTERS.finditer(text):
        start = match.start()
        drop.extend((start + m.start(), start + m.end()) for m in _SEPARATOR.finditer(match[0]))
    drop.extend(match.span() for match in _SPACED_HAN.finditer(text))
    if not drop:
        return text, origin
    drop.sort()
    kept_text: list[str] = []
    kept_origin: list[int] = []
    position = 0
    for start, end in drop:
        kept_text.append(text[position:start])
        kept_origin.extend(origin[position:start])
        position = end
    kept_text.append(text[position:])
    kept_origin.extend(origin[position:])
    return "".join(kept_text), kept_origin


def _unleet_token(match: re.Match[str], one: str) -> str:
    token = match[0]
    letters = sum(char.isalpha() for char in token)
    if letters < 2 and not any(symbol in token for symbol in "@$"):
        return token  # "a55" is a phone model, "455" an order number
    out = token.translate(_LEET_DIGITS[one]) if letters >= 2 else token
    chars = list(out)
    for index, char in enumerate(chars):
        symbol = _LEET_SYMBOLS.get(char)
        if symbol is None:
            continue
        # "!" only inside a word ("b!tch"), never the exclamation mark after it ("shit!")
        if char == "!" and (
            index == 0 or index + 1 == len(chars) or not chars[index + 1].isalnum()
        ):
            continue
        chars[index] = symbol
    return "".join(chars)


def _unleet(text: str, one: str) -> str:
    """Step 3; the same length in and out. ``one``: what "1" stands for, "i" or "l"."""
    if not any(char in text for char in "013457@$!"):
        return text
    return _LEET_TOKEN.sub(lambda match: _unleet_token(match, one), text)


def normalise_views(text: str) -> list[Normalised]:
    """The normalised text; and a second reading when a "1" inside a word may stand for "l"
    as well as "i" ("ki11" / "sh1t")."""
    folded, origin = _fold(text)
    folded, origin = _drop_separators(folded, origin)
    as_i = _unleet(folded, "i")
    views = [_collapse(as_i, origin)]
    if "1" in folded:
        as_l = _unleet(folded, "l")
        if as_l != as_i:
            views.append(_collapse(as_l, origin))
    return views


def normalise(text: str) -> Normalised:
    return normalise_views(text)[0]


def _collapse(folded: str, origin: Sequence[int]) -> Normalised:
    """Step 4: runs of one character become one; only the (few) runs are walked in Python."""
    positions: list[int] = []
    lengths: list[int] = []
    offsets: list[int] = []
    removed = 0
    for run in _REPEATS.finditer(folded):
        start, end = run.span()
        positions.append(start - removed)
        lengths.append(end - start)
        offsets.append(removed)
        removed += end - start - 1
    collapsed = _REPEATS.sub(r"\1", folded) if positions else folded
    return Normalised(collapsed, folded, origin, tuple(positions), tuple(lengths), tuple(offsets))


def normalise_term(term: str) -> Normalised:
    """A list entry, normalised like text; blank or separator-only entries give ``text == ""``."""
    return normalise(term.strip())
