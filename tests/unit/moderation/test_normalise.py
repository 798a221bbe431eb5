"""Each normalisation trick, and the map from normalised positions back to the original."""

from __future__ import annotations

import pytest

from shared.moderation.normalise import normalise, normalise_views


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FuCk", "fuck"),  # case
        ("ｆｕｃｋ", "fuck"),  # full-width → half-width
        ("幹你娘", "干你娘"),  # traditional → simplified
        ("這他媽的", "这他妈的"),
        ("f.u.c.k", "fuck"),  # characters inserted between letters
        ("f u c k", "fuck"),
        ("f-u-c-k", "fuck"),
        ("傻 逼", "傻逼"),
        ("傻*逼", "傻逼"),
        ("傻.逼", "傻逼"),
        ("sh1t", "shit"),  # leetspeak
        ("$h!t", "shit"),
        ("a$$", "as"),  # "$$" → "ss", then collapsed (the run length is kept)
        ("@ss", "as"),
        ("1d10t", "idiot"),
        ("h4t3", "hate"),
        ("7w4t", "twat"),
        ("fuuuuck", "fuck"),  # repeated letters
    ],
)
def test_each_trick_reads_back_to_the_word(text: str, expected: str) -> None:
    assert normalise(text).text == expected


def test_a_one_inside_a_word_is_also_read_as_l() -> None:
    assert [view.text for view in normalise_views("ki11")] == ["ki", "kil"]


def test_digits_alone_or_with_a_single_letter_stay_digits() -> None:
    assert normalise("order 455").text == "order 45"  # not "as": 455 is an order number
    assert normalise("galaxy a55").text == "galaxy a5"


def test_an_exclamation_mark_after_a_word_is_not_an_i() -> None:
    assert normalise("shit!").text == "shit!"


def test_ordinary_words_keep_their_spaces() -> None:
    assert normalise("I am here").text == "i am here"
    assert normalise("kill the process").text == "kil the proces"


def test_run_lengths_are_kept() -> None:
    view = normalise("assess")
    assert view.text == "ases"
    assert [view.run_length(i) for i in range(len(view.text))] == [1, 2, 1, 2]


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("oh f.u.c.k it", "f.u.c.k"),
        ("well ｆｕｃｋ this", "ｆｕｃｋ"),
        ("so fuuuuck that", "fuuuuck"),
        ("你个傻 逼啊", "傻 逼"),
        ("ﬁne ﬀ sh1t", "sh1t"),  # ligatures expand to two characters before the match
    ],
)
def test_spans_point_at_the_original_characters(text: str, word: str) -> None:
    view = normalise(text)
    target = normalise(word).text
    start = view.text.index(target)
    original_start, original_end = view.original_span(start, start + len(target))
    assert text[original_start:original_end] == word
