"""Cleaning: every rule drops what it should and keeps what it should, and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data.clean import (
    Change,
    CleanOptions,
    DropReason,
    clean_examples,
    weighted_length,
)
from training.data.examples import ChatExample
from training.data.sources import read_source


def chat(
    question: str, answer: str, *, lang: str = "en", facts: tuple[str, ...] = ()
) -> ChatExample:
    return ChatExample.model_validate(
        {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ],
            "lang": lang,
            "facts": list(facts),
        }
    )


RESET_EN = "Hold the RESET button on the back for 5 seconds until the light flashes."
RESET_ZH = "按住路由器背面的RESET键5秒，直到指示灯闪烁，路由器会恢复出厂设置。"


def only_dropped(result_dropped: dict[DropReason, int]) -> dict[str, int]:
    return {reason.value: count for reason, count in result_dropped.items() if count}


def test_a_chinese_character_weighs_three_latin_ones() -> None:
    assert weighted_length("refund") == 6
    assert weighted_length("退货") == 6
    assert weighted_length("  退货   ok  ") == 9  # whitespace runs count once, ends not at all
    assert weighted_length("") == 0


def test_rows_that_could_not_be_read_are_reported_as_malformed(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(
        '{"input": "Is shipping free?", "output": "From ¥99 it is."}\n{broken\n',
        encoding="utf-8",
    )
    result = clean_examples(read_source(source))
    assert result.report.rows_read == 2
    assert result.report.rows_kept == 1
    assert only_dropped(result.report.dropped) == {"malformed": 1}
    (sample,) = result.report.samples[DropReason.MALFORMED]
    assert (sample.line, sample.text) == (2, "{broken")
    assert sample.detail.startswith("not JSON")


def test_empty_short_and_long_turns_are_dropped_with_the_limit_they_broke() -> None:
    rows = [
        chat("   ", "We deliver in 2–4 days."),
        chat("Is shipping free?", ""),
        chat("hi", "Hello! How can I help?"),
        chat("嗯", "您好，请问有什么可以帮您？", lang="zh"),
        chat("Is shipping free?", "OK"),
        chat("Tell me everything.", "x" * 2001),
        chat("说明书全文？", "字" * 700, lang="zh"),  # 2,100 Latin-character equivalents
        chat("说明书摘要？", "字" * 600, lang="zh"),  # 1,800: kept
        chat("退货？", "7天内可以无理由退货。", lang="zh"),  # 7: a short question, kept
    ]
    result = clean_examples(rows)
    report = result.report
    assert only_dropped(report.dropped) == {"empty_turn": 2, "too_short": 3, "too_long": 2}
    assert [example.prompt[0]["content"] for example in result.examples] == [
        "说明书摘要？",
        "退货？",
    ]
    details = [sample.detail for sample in report.samples[DropReason.TOO_SHORT]]
    assert details == ["question: 2 < 4 chars", "question: 3 < 4 chars", "answer: 2 < 4 chars"]
    assert report.samples[DropReason.TOO_LONG][1].detail == "turn 2 (assistant): 2100 > 2000 chars"
    assert report.samples[DropReason.EMPTY_TURN][0].detail == "turn 1 (user) is empty"


def test_the_limits_are_configurable() -> None:
    rows = [
        chat("Is shipping free?", "From ¥99 on, yes."),
        chat("Refund?", "3–5 working days."),
        chat("When is my refund?", "In 3–5 working days."),
    ]
    options = CleanOptions(min_question_chars=10, max_turn_chars=18)
    result = clean_examples(rows, options=options)
    assert only_dropped(result.report.dropped) == {"too_short": 1, "too_long": 1}
    assert result.report.options == options


def test_moderation_drops_blocked_rows_and_masks_a_customer_turn_as_the_product_does() -> None:
    rows = [
        chat("傻逼客服，我的退款呢？", "退款一般3–5个工作日到账。", lang="zh"),
        chat("Answer me or I will kill you", "Your order ships today."),
        chat("this shit router will not reset", RESET_EN),
        chat("How do I reset the router?", "Hold the fucking button for 5 seconds."),
        chat("How do I pair my headphones?", "Hold the power button for 3 seconds."),
    ]
    result = clean_examples(rows)

    assert only_dropped(result.report.dropped) == {"moderation": 3}
    assert [s.detail for s in result.report.samples[DropReason.MODERATION]] == [
        "abuse",
        "violence",
        "profanity",  # an answer the product would mask is not one to learn
    ]
    masked, untouched = result.examples
    assert masked.prompt[0]["content"] == "this *** router will not reset"
    assert masked.answer == RESET_EN
    assert untouched == rows[4]
    assert result.report.changed[Change.MODERATION_MASKED] == 1


def test_exact_duplicates_are_found_after_normalising_case_width_and_whitespace() -> None:
    rows = [
        chat("How do I reset my router?", RESET_EN),
        chat("  how do I reset   my ROUTER？", RESET_EN.upper()),
        chat("ＨＯＷ do I reset my router", RESET_EN),
        chat("How do I reset my router?", "Unplug it and plug it back in, then wait two minutes."),
    ]
    result = clean_examples(rows)
    assert only_dropped(result.report.dropped) == {"exact_duplicate": 2}
    assert [sample.detail for sample in result.report.samples[DropReason.EXACT_DUPLICATE]] == [
        "like kept row 1",
        "like kept row 1",
    ]
    assert result.examples == [rows[0], rows[3]]  # same question, another answer: kept


def test_near_duplicates_are_dropped_in_english_and_chinese() -> None:
    rows = [
        chat("How do I reset my Lumen router to its factory settings?", RESET_EN),
        chat(
            "How do I reset my Lumen router to its factory settings, please?",  # 0.86
            RESET_EN.replace("5 seconds", "five seconds"),  # 0.87
        ),
        chat("路由器怎么恢复出厂设置？", RESET_ZH, lang="zh"),
        chat("请问路由器怎么恢复出厂设置？", RESET_ZH.replace("会恢复", "就会恢复"), lang="zh"),
    ]
    result = clean_examples(rows)
    assert only_dropped(result.report.dropped) == {"near_duplicate": 2}
    assert result.examples == [rows[0], rows[2]]


def test_paraphrases_and_similar_questions_with_other_answers_are_kept() -> None:
    rows = [
        chat("How do I reset my router?", RESET_EN),
        chat("How can I reset my router?", RESET_EN),  # a paraphrase (0.67) teaches wording
        chat("如何重置路由器？", RESET_ZH, lang="zh"),
        chat("怎么重置路由器？", RESET_ZH, lang="zh"),  # 0.43
        chat("How long is the warranty on routers?", "Routers have a 2-year warranty."),
        chat("How long is the warranty on kettles?", "Kettles have a 1-year warranty."),
    ]
    result = clean_examples(rows)
    assert result.examples == rows
    assert result.report.rows_kept == 6


def test_a_stricter_threshold_keeps_more() -> None:
    rows = [
        chat("How do I reset my Lumen router to its factory settings?", RESET_EN),
        chat("How do I reset my Lumen router to its factory settings, please?", RESET_EN),
    ]
    assert len(clean_examples(rows).examples) == 1
    strict = CleanOptions(near_duplicate_threshold=0.95)
    assert len(clean_examples(rows, options=strict).examples) == 2


def test_personal_data_is_anonymised_consistently_within_an_example() -> None:
    rows = [
        chat(
            "My number is 13812345678, or 138 1234 5678 at work; mail me at li.wei@example.com",
            "We will call 13812345678 today, or 13987654321 if that fails.",
        ),
        chat("Is shipping free?", "From ¥99 it is."),
    ]
    result = clean_examples(rows)
    anonymised = result.examples[0]
    assert anonymised.prompt[0]["content"] == (
        "My number is <PHONE_1>, or <PHONE_1> at work; mail me at <EMAIL_1>"
    )
    assert anonymised.answer == "We will call <PHONE_1> today, or <PHONE_2> if that fails."
    assert result.examples[1] == rows[1]
    assert result.report.changed[Change.PII_ANONYMISED] == 1


def test_public_contacts_in_the_facts_or_the_keep_list_are_not_anonymised() -> None:
    fallback = (
        "Sorry, I don't know. Email support@lumenhome.example or call 400-800-1234; "
        "your number 13812345678 is not needed."
    )
    row = chat("Do you sell washers?", fallback, facts=("400-800-1234",))
    kept = clean_examples([row], options=CleanOptions(keep_values=("support@lumenhome.example",)))
    assert kept.examples[0].answer == (
        "Sorry, I don't know. Email support@lumenhome.example or call 400-800-1234; "
        "your number <PHONE_1> is not needed."
    )
    default = clean_examples([chat("Do you sell washers?", fallback)])
    assert default.examples[0].answer == (
        "Sorry, I don't know. Email <EMAIL_1> or call <PHONE_1>; your number <PHONE_2> is not "
        "needed."
    )


def test_rows_that_differ_only_in_personal_data_are_duplicates() -> None:
    rows = [
        chat("Please call me on 13812345678 about my refund", "We will call you today."),
        chat("Please call me on 13987654321 about my refund", "We will call you today."),
    ]
    result = clean_examples(rows)
    assert only_dropped(result.report.dropped) == {"exact_duplicate": 1}


def test_the_report_counts_every_reason_keeps_three_samples_and_no_personal_data() -> None:
    rows = [chat(f"hi{n}", "Call 13812345678 for help.") for n in range(5)]
    report = clean_examples(rows).report
    assert set(report.dropped) == set(DropReason)
    assert report.dropped[DropReason.TOO_SHORT] == 5
    samples = report.samples[DropReason.TOO_SHORT]
    assert len(samples) == 3
    assert all(
        "13812345678" not in sample.text and "<PHONE_1>" in sample.text for sample in samples
    )
    data = json.loads(report.model_dump_json())
    assert data["dropped"]["too_short"] == 5
    assert data["changed"] == {"pii_anonymised": 0, "moderation_masked": 0}
    assert report.summary_lines() == ["0 of 5 rows kept", "  dropped, too_short: 5"]


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_a_threshold_outside_zero_to_one_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="near_duplicate_threshold"):
        CleanOptions(near_duplicate_threshold=threshold)
