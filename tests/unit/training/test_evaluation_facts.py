"""Exact-fact matching: normalisation (case, width, whitespace) and number boundaries."""

from __future__ import annotations

import pytest

from training.evaluation.facts import BlankFactError, facts_stated, normalise_for_facts


def states(answer: str, fact: str) -> bool:
    return facts_stated(answer, [fact]) == [fact]


@pytest.mark.parametrize(
    "answer",
    ["Returns are accepted within 17 days.", "within 70 days", "1.7 days", "7,000 orders", "x27"],
)
def test_a_number_inside_another_number_is_not_the_fact(answer: str) -> None:
    assert not states(answer, "7")


@pytest.mark.parametrize(
    "answer",
    ["within 7 days.", "7天内可以退货", "请在7天内", "(7)", "7-day returns", "day 7, then"],
)
def test_a_number_standing_alone_is_the_fact(answer: str) -> None:
    assert states(answer, "7")


def test_the_number_boundary_applies_at_both_ends_of_a_fact() -> None:
    assert states("退货期为7天。", "7天")
    assert not states("退货期为17天。", "7天")
    assert states("shipping costs 5 dollars", "costs 5")
    assert not states("shipping costs 50 dollars", "costs 5")
    assert not states("shipping costs 5.5 dollars", "costs 5")


def test_full_width_characters_match_their_half_width_forms() -> None:
    assert states("退货期为７天。", "7天")
    assert states("请联系ＳＦ快递", "sf快递")
    assert states("we ship with SF", "ＳＦ")
    assert not states("退货期为１７天。", "7天")


def test_dashes_are_hyphens() -> None:
    assert states("Delivery takes 2-4 days.", "2\u20134 days")  # en dash in the fact
    assert states("发货后2\u20144天送达", "2-4天")  # em dash in the answer
    assert not states("Delivery takes 12-4 days.", "2-4 days")


def test_case_does_not_matter() -> None:
    assert states("We ship with SF EXPRESS.", "sf express")
    assert states("we ship with sf express.", "SF Express")


def test_whitespace_runs_are_one_space_and_none_beside_chinese() -> None:
    assert states("returns within 30\n  days", "30 days")
    assert states("退货期为 7 天。", "7天")
    assert states("退货期为7天。", "7 天")
    assert states("退货期为\u30007\u3000天", "7天")  # ideographic spaces
    assert not states("returns within 30days", "30 days")


def test_chinese_facts_match_inside_chinese_text() -> None:
    assert states("我们使用顺丰快递发货，一般两天到达。", "顺丰")
    assert not states("我们使用圆通快递发货。", "顺丰")


def test_only_the_stated_facts_come_back_in_their_order() -> None:
    answer = "Refunds take 5 business days; contact support@shop.example."
    facts = ["support@shop.example", "30 days", "5 business days"]
    assert facts_stated(answer, facts) == ["support@shop.example", "5 business days"]


def test_a_blank_fact_is_refused() -> None:
    with pytest.raises(BlankFactError, match="blank"):
        facts_stated("anything", ["  \u3000"])


def test_normalisation_is_what_the_rules_say() -> None:
    assert normalise_for_facts("  Ｈｅｌｌｏ\tWORLD  ７ 天 ") == "hello world 7天"
