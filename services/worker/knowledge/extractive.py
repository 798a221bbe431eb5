"""Extractive answers: the sentences of a retrieved passage that answer the question.

Quoting the tenant's own words cannot hallucinate and costs no model call; the router uses it
when a passage clearly matches. The passage is cleaned of Markdown syntax first (heading marks,
bullet marks, emphasis, link syntax: the words stay), and returned whole when it is short.
Otherwise its best sentence is chosen by meaning where the caller knows each sentence's cosine
to the question (the router does: the sentences' vectors are stored with their chunk), with the
question's lexical tokens it shares (``lexical_tokens``: stemmed English words, Chinese bigrams
and characters) deciding near-ties; without cosines, by the shared tokens alone ("is there an
expiry date?" shares no word with "valid for 3 years", which is why meaning comes first). It is
kept with what most likely completes it: the sentence after it (the answer to a question-like
sentence or a heading follows it), then other sentences sharing the question's tokens. Sentences
sharing nothing are left out even when there is room: a short focused answer beats a padded one.
The kept sentences come back in their original order, so the answer reads as the text. With no
shared token at all, the passage's opening sentences are the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import pairwise

from shared.knowledge.text import lexical_tokens, split_sentences

_HEADING_MARK = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_BULLET_MARK = re.compile(r"^([ \t]*)(?:[-*+\u2022]|>)[ \t]+", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1|`([^`]+)`")
_FENCE_LINE = re.compile(r"^ {0,3}(```|~~~).*$\n?", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


def clean_markdown(text: str) -> str:
    """The text without Markdown syntax: heading and bullet marks, ** and __ emphasis,
    backticks and fences, link syntax ("[help](https://x)" becomes "help (https://x)"); numbered
    list markers stay, as the numbers carry the order of steps."""
    text = _FENCE_LINE.sub("", text)
    text = _HEADING_MARK.sub(r"\1", text)
    text = _BULLET_MARK.sub(r"\1", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1 (\2)", text)
    text = _EMPHASIS.sub(lambda m: m.group(2) or m.group(3), text)
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


SEMANTIC_OVERLAP_WEIGHT = 0.01
"""With a ``similarity``, each shared question token adds this to a sentence's cosine: e5's
cosines between one question and a passage's sentences lie within a few hundredths, so a
shared token decides near-ties and no more."""


def passage_sentences(passage: str) -> list[str]:
    """The sentences ``extract_answer`` chooses from (the keys its ``similarity`` is asked
    about), so that an index can embed them ahead of time."""
    return [sentence for _, sentence in _sentences(clean_markdown(passage))]


def _sentences(cleaned: str) -> list[tuple[int, str]]:
    """(line number, sentence) of a cleaned passage."""
    return [
        (line_number, sentence)
        for line_number, line in enumerate(cleaned.splitlines())
        for sentence in split_sentences(line)
    ]


def extract_answer(
    query: str,
    passage: str,
    *,
    max_chars: int = 420,
    similarity: Callable[[str], float | None] | None = None,
) -> str:
    """The passage, cleaned, if it fits in ``max_chars``; else its sentences most relevant to
    the query, in passage order, within ``max_chars`` (a single sentence longer than that is
    cut at a word boundary and ends with "…"). Empty only for a blank passage.

    ``similarity`` (a sentence's cosine to the question, None when unknown) chooses the best
    sentence by meaning: "is there an expiry date?" shares no word with "valid for 3 years"."""
    cleaned = clean_markdown(passage)
    if not cleaned:
        return passage.strip()
    if len(cleaned) <= max_chars:
        return cleaned

    sentences = _sentences(cleaned)
    overlaps = _overlaps(query, sentences)
    best = _best(sentences, overlaps, similarity)
    if len(sentences[best][1]) > max_chars:
        return _cut(sentences[best][1], max_chars)

    # The sentence after the best one first, then the others sharing the question's tokens,
    # most shared first, nearest first; sentences sharing nothing are left out.
    following = [best + 1] if best + 1 < len(sentences) else []
    related = sorted(
        (i for i in range(len(sentences)) if overlaps[i] and i not in (best, best + 1)),
        key=lambda i: (-overlaps[i], abs(i - best), i),
    )
    chosen = {best}
    used = len(sentences[best][1])
    for i in following + related:
        if used + 1 + len(sentences[i][1]) <= max_chars:
            chosen.add(i)
            used += 1 + len(sentences[i][1])
    return _join([sentences[i] for i in sorted(chosen)])


def best_sentence(
    query: str,
    sentences: Sequence[str],
    similarity: Callable[[str], float | None] | None = None,
) -> str | None:
    """Of ``sentences`` (``passage_sentences`` of a text), the one ``extract_answer`` would
    build its answer around, chosen the same way; None when there are none."""
    numbered = list(enumerate(sentences))
    if not numbered:
        return None
    return numbered[_best(numbered, _overlaps(query, numbered), similarity)][1]


def _overlaps(query: str, sentences: list[tuple[int, str]]) -> list[int]:
    """How many of the query's distinct lexical tokens each sentence holds."""
    wanted = set(lexical_tokens(query))
    return [len(wanted.intersection(lexical_tokens(s))) for _, s in sentences]


def _best(
    sentences: list[tuple[int, str]],
    overlaps: list[int],
    similarity: Callable[[str], float | None] | None,
) -> int:
    """The best sentence's index: by meaning, shared tokens deciding near-ties, where every
    sentence's cosine is known; else by shared tokens alone, the earliest first."""
    cosines = [similarity(s) for _, s in sentences] if similarity is not None else []
    if cosines and all(cosine is not None for cosine in cosines):
        return max(
            range(len(sentences)),
            key=lambda i: (cosines[i] or 0.0) + SEMANTIC_OVERLAP_WEIGHT * overlaps[i],
        )
    return max(range(len(sentences)), key=lambda i: (overlaps[i], -i))


def _join(sentences: list[tuple[int, str]]) -> str:
    """Sentences back into text: a newline between lines, nothing between Chinese sentences,
    a space between others."""
    text = sentences[0][1]
    for (previous_line, previous), (line, sentence) in pairwise(sentences):
        if line != previous_line:
            text += "\n"
        elif not (_CJK.match(previous[-1]) or _CJK.match(sentence[0])):
            text += " "
        text += sentence
    return text


def _cut(sentence: str, max_chars: int) -> str:
    cut = sentence[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:，、；：") + "…"
