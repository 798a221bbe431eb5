"""The held-out split: deterministic, stratified by language, no question group on both sides."""

from __future__ import annotations

import random

import pytest

from training.data.examples import ChatExample
from training.data.near_duplicates import near_duplicate_groups
from training.data.split import split_examples

EN_TOPICS = [
    "shipping to Shanghai",
    "refunds for kettles",
    "the router warranty",
    "pairing Buds Air",
    "gift card balances",
    "points expiry",
    "invoices for companies",
    "price protection",
    "smart plug setup",
    "cancelling an order",
    "delivery to Macau",
    "descaling the K1",
    "Huabei instalments",
    "damaged parcels",
    "Gold membership",
    "missed deliveries",
    "return postage",
    "the returns centre",
    "Mesh M2 resets",
    "Aura headphones",
]
ZH_TOPICS = [
    "运费",
    "退货",
    "保修",
    "配对耳机",
    "礼品卡",
    "积分",
    "发票",
    "价保",
    "智能插座",
    "取消订单",
    "澳门配送",
    "电水壶除垢",
    "花呗分期",
    "包裹破损",
    "金卡会员",
    "无人签收",
    "退货运费",
    "退货中心",
    "路由器重置",
    "头戴耳机",
]


def chat(question: str, answer: str, lang: str) -> ChatExample:
    return ChatExample.model_validate(
        {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ],
            "lang": lang,
        }
    )


def dataset() -> list[ChatExample]:
    rows = [chat(f"What should I know about {t}?", f"All about {t}.", "en") for t in EN_TOPICS]
    rows += [chat(f"关于{t}，我需要了解什么？", f"关于{t}的说明。", "zh") for t in ZH_TOPICS]
    # near copies with answers of their own: each must land beside its original
    rows.append(chat("What should I know about shipping to Shanghai, please?", "Another.", "en"))
    rows.append(chat("What should I know about the router warranty today?", "More.", "en"))
    rows.append(chat("请问关于运费，我需要了解什么？", "另一个回答。", "zh"))
    return rows


def questions(rows: list[ChatExample]) -> set[str]:
    return {row.prompt[-1]["content"] for row in rows}


def test_the_same_seed_gives_the_same_split_and_another_seed_another() -> None:
    first = split_examples(dataset(), seed=7)
    again = split_examples(dataset(), seed=7)
    other = split_examples(dataset(), seed=8)
    assert first.train == again.train and first.eval == again.eval
    assert questions(first.eval) != questions(other.eval)


def test_the_split_does_not_depend_on_the_order_of_the_rows() -> None:
    rows = dataset()
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert questions(split_examples(rows).eval) == questions(split_examples(shuffled).eval)


def test_every_row_is_on_exactly_one_side_and_marked() -> None:
    rows = dataset()
    result = split_examples(rows)
    assert len(result.train) + len(result.eval) == len(rows)
    assert questions(result.train).isdisjoint(questions(result.eval))
    assert {row.split for row in result.train} == {"train"}
    assert {row.split for row in result.eval} == {"eval"}
    # apart from the marker, the rows are the ones given, in their order
    unmarked = [row.model_copy(update={"split": None}) for row in result.train]
    assert unmarked == [row for row in rows if row.prompt[-1]["content"] in questions(result.train)]


def test_both_languages_are_held_out_at_about_the_share() -> None:
    result = split_examples(dataset(), eval_share=0.15)
    assert set(result.report.eval) == {"en", "zh"}
    for lang, total in (("en", 22), ("zh", 21)):
        held_out = result.report.eval[lang]
        assert 1 <= held_out <= round(0.15 * total) + 1  # a group is never cut in two
        assert result.report.train[lang] + held_out == total


@pytest.mark.parametrize("seed", range(12))
def test_near_duplicate_questions_never_straddle_train_and_eval(seed: int) -> None:
    rows = dataset()
    result = split_examples(rows, seed=seed, eval_share=0.3)
    held_out = questions(result.eval)
    groups = near_duplicate_groups([row.prompt[-1]["content"] for row in rows], 0.6)
    for group in set(groups):
        members = {rows[i].prompt[-1]["content"] for i, g in enumerate(groups) if g == group}
        assert members <= held_out or members.isdisjoint(held_out), members
    assert result.report.groups == len(rows) - 3


def test_a_language_with_one_question_group_stays_in_train() -> None:
    rows = [chat(f"What should I know about {t}?", "Answer.", "en") for t in EN_TOPICS]
    rows.append(chat("关于运费，我需要了解什么？", "说明。", "zh"))
    result = split_examples(rows)
    assert result.report.eval.get("zh", 0) == 0
    assert result.report.train["zh"] == 1


def test_a_zero_share_holds_nothing_out_and_a_share_of_one_is_refused() -> None:
    assert split_examples(dataset(), eval_share=0.0).eval == []
    with pytest.raises(ValueError, match="eval share"):
        split_examples(dataset(), eval_share=1.0)


def test_augmented_rows_are_refused_because_they_must_never_reach_eval() -> None:
    rows = dataset()
    rows.append(rows[0].model_copy(update={"origin": "augment:template"}))
    with pytest.raises(ValueError, match="split the cleaned data first, then augment"):
        split_examples(rows)
