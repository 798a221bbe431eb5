"""Documents into chunks: heading paths, paragraph packing, sizes that weigh Chinese."""

from __future__ import annotations

import pytest

from shared.knowledge.chunking import (
    MAX_CHUNK_SIZE,
    MAX_DOCUMENT_CHARS,
    TARGET_CHUNK_SIZE,
    Chunk,
    chunk_document,
    first_heading,
    text_size,
)

GUIDE = """# Help Center

Welcome to the help center.

## Returns

You can return items within 30 days.

Refunds take 5 days.

### Damaged items

Send us a photo.

## Shipping

```
# not a heading

still code
```
"""


def test_blank_text_gives_no_chunk() -> None:
    assert chunk_document("Empty", "") == []
    assert chunk_document("Empty", "  \n\n\t\n") == []


def test_headings_become_a_path_under_the_title() -> None:
    chunks = chunk_document("Help Center", GUIDE)
    assert [c.heading for c in chunks] == [
        "Help Center",
        "Help Center > Returns",
        "Help Center > Returns > Damaged items",
        "Help Center > Shipping",
    ]
    assert chunks[1].text == "You can return items within 30 days.\n\nRefunds take 5 days."


def test_a_title_heading_is_not_repeated_but_another_first_heading_is_kept() -> None:
    assert chunk_document("Guide", "# Other\n\ntext")[0].heading == "Guide > Other"
    assert chunk_document("help center", "# Help Center\n\ntext")[0].heading == "help center"


PLAIN_GUIDE = """Check-in and Check-out

Times

Check-in is from 15:00 and check-out is by 12:00.

Late check-out

Late check-out depends on availability.

- Until 14:00: $30
- Until 18:00: half the nightly rate

提前入住

如果房间已准备好，10:00起即可免费提前入住。

Open every day 9:00-21:00

Fees:

Nothing else is charged.
"""


def test_plain_text_headings_are_recognised() -> None:
    chunks = chunk_document("check-in", PLAIN_GUIDE)
    assert [c.heading for c in chunks] == [
        "check-in > Check-in and Check-out > Times",
        "check-in > Check-in and Check-out > Late check-out",
        "check-in > Check-in and Check-out > 提前入住",
    ]
    assert chunks[0].text == "Check-in is from 15:00 and check-out is by 12:00."
    # a line with a number states a fact and a label ends with a colon: both stay text
    assert chunks[2].text.endswith("Open every day 9:00-21:00\n\nFees:\n\nNothing else is charged.")
    assert first_heading(PLAIN_GUIDE) == "Check-in and Check-out"


def test_a_bold_line_in_plain_text_is_a_heading_without_its_stars() -> None:
    text = "**Late check-out**\n\nAsk at the desk.\n\n__Parking__\n\nThe garage is below."
    assert [c.heading for c in chunk_document("Stay", text)] == [
        "Stay > Late check-out",
        "Stay > Parking",
    ]


def test_a_plain_text_restating_its_title_is_not_repeated() -> None:
    chunks = chunk_document("Check-in and Check-out", PLAIN_GUIDE)
    assert chunks[0].heading == "Check-in and Check-out > Times"


def test_a_last_line_or_a_sentence_is_not_a_heading() -> None:
    text = "Returns are free\n\nWe refund within five days.\n\nThank you"
    assert [(c.heading, c.text) for c in chunk_document("Policy", text)] == [
        ("Policy > Returns are free", "We refund within five days.\n\nThank you")
    ]
    sentences = "We refund within five days.\n\nReturns are easy."
    assert chunk_document("Policy", sentences)[0].heading == "Policy"


def test_short_lines_in_a_row_stay_text_but_the_last_one_over_a_paragraph() -> None:
    text = "Hotel\n\nClosed on Sundays\n\nParking available\n\nWe are a nice hotel."
    assert [(c.heading, c.text) for c in chunk_document("Doc", text)] == [
        ("Doc > Hotel", "Closed on Sundays"),
        ("Doc > Parking available", "We are a nice hotel."),
    ]


def test_labelled_facts_rule_lines_and_inline_bold_are_never_headings() -> None:
    for text in (
        "Check-in: from 3 pm\n\nCheck-out: by 11 am\n\nMore text.",
        "营业时间：每天上午九点到晚上九点\n\n地址：北京市朝阳区建国路\n\n欢迎光临。",
        "Intro text here.\n\n==========\n\nMore text.",
        "Intro text here.\n\n**Step one** then **step two**\n\nDo it.",
    ):
        assert [c.heading for c in chunk_document("Doc", text)] == ["Doc"], text
        assert first_heading(text) is None


def test_a_bold_line_is_no_section_before_the_first_markdown_heading_or_above_another() -> None:
    text = (
        "**Internal use only**\n\nDo not share.\n\n# Check-in\n\nArrive after 3 pm.\n\n"
        "**Bring your passport**\n\n# Breakfast\n\nServed daily."
    )
    assert [(c.heading, c.text) for c in chunk_document("Doc", text)] == [
        ("Doc", "**Internal use only**\n\nDo not share."),
        ("Doc > Check-in", "Arrive after 3 pm.\n\n**Bring your passport**"),
        ("Doc > Breakfast", "Served daily."),
    ]
    assert first_heading(text) == "Check-in"


def test_a_byte_order_mark_is_not_part_of_the_first_heading() -> None:
    text = "\ufeffHotel policies\n\nLate check-out\n\nUntil 1 pm."
    assert first_heading(text) == "Hotel policies"
    assert chunk_document("Doc", text)[0].heading == "Doc > Hotel policies > Late check-out"


def test_markdown_headings_switch_plain_text_headings_off_but_bold_lines() -> None:
    text = (
        "Returns are free\n\nWe refund.\n\n## Shipping\n\nFree over 99.\n\n"
        "**Remote regions**\n\nTibet takes a week.\n\n**Express**\n\nNext day.\n\n"
        "# Payment\n\n**Cards**\n\nVisa."
    )
    chunks = chunk_document("Policy", text)
    assert [c.heading for c in chunks] == [
        "Policy",
        "Policy > Shipping",
        "Policy > Shipping > Remote regions",
        "Policy > Shipping > Express",
        "Policy > Payment > Cards",
    ]
    assert chunks[0].text == "Returns are free\n\nWe refund."


def test_setext_headings_are_markdown_headings() -> None:
    text = "Help\n====\n\nWelcome.\n\nReturns\n-------\n\nFree.\n\n---\n\nEnd."
    chunks = chunk_document("Help", text)
    assert [(c.heading, c.text) for c in chunks] == [
        ("Help", "Welcome."),
        ("Help > Returns", "Free.\n\n---\n\nEnd."),
    ]
    assert first_heading(text) == "Help"


def test_headings_inside_code_fences_are_text() -> None:
    last = chunk_document("Help Center", GUIDE)[-1]
    assert "# not a heading" in last.text and "still code" in last.text


def test_positions_count_the_chunks_in_order() -> None:
    chunks = chunk_document("Help Center", GUIDE)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert chunks[0] == Chunk(0, "Help Center", "Welcome to the help center.")


def test_paragraphs_are_packed_up_to_the_target_size() -> None:
    paragraph = "This paragraph is about eighty characters long, give or take a few words."
    chunks = chunk_document("T", "\n\n".join([paragraph] * 20))
    assert len(chunks) > 1
    assert all(text_size(c.text) <= TARGET_CHUNK_SIZE for c in chunks)
    assert all(c.text.count(paragraph) >= 5 for c in chunks[:-1])


def test_a_long_paragraph_is_split_at_sentence_ends() -> None:
    sentence = "Each of these sentences is a complete thought that ends with a period."
    chunks = chunk_document("T", " ".join([sentence] * 40))
    assert len(chunks) > 2
    assert all(c.text.endswith(".") and c.text.startswith("Each") for c in chunks)
    assert all(text_size(c.text) <= MAX_CHUNK_SIZE for c in chunks)


def test_chinese_characters_weigh_three_latin_ones() -> None:
    assert text_size("退货") == 6
    assert text_size("abc退货") == 9


def test_a_chinese_paragraph_is_split_by_weighted_size() -> None:
    text = "标准配送需要三到五个工作日，偏远地区可能更久。" * 30  # 690 chars, 2070 weighted
    chunks = chunk_document("配送", text)
    assert len(chunks) >= 3
    assert all(text_size(c.text) <= MAX_CHUNK_SIZE for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_a_text_without_any_break_is_still_cut_into_bounded_chunks() -> None:
    chunks = chunk_document("T", "字" * 1000)
    assert all(c.text and text_size(c.text) <= MAX_CHUNK_SIZE for c in chunks)
    assert sum(len(c.text.replace("\n", "")) for c in chunks) == 1000


def test_a_small_remainder_joins_the_chunk_before_it() -> None:
    big = "A sentence long enough to fill most of a chunk on its own, more or less. " * 6
    chunks = chunk_document("T", f"{big.strip()}\n\nShort tail.")
    assert len(chunks) == 1 and chunks[0].text.endswith("Short tail.")


@pytest.mark.parametrize("text", [GUIDE, "# A\n\n## B\n\n### C", "x\n\n\n\ny", "- a\n- b\n\n1. c"])
def test_no_chunk_is_ever_empty(text: str) -> None:
    assert all(c.text.strip() for c in chunk_document("T", text))


def test_a_document_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="more than"):
        chunk_document("T", "x" * (MAX_DOCUMENT_CHARS + 1))
