"""Extractive answers: short passages whole and clean, long ones cut to what answers."""

from __future__ import annotations

from services.worker.knowledge.extractive import (
    best_sentence,
    clean_markdown,
    extract_answer,
    passage_sentences,
)

RETURNS = (
    "## Returns\n\n"
    "You can return **most items** within 30 days of delivery. Items must be unused and in "
    "their original packaging. Print the free return label from your "
    "[order page](https://shop.example/orders) and drop the parcel at any post office. "
    "Underwear and opened software cannot be returned. Refunds are issued within 5 business "
    "days after we receive the parcel. Your bank may need another 3 to 5 days to show the "
    "money. Gift cards are valid for three years and cannot be exchanged for cash. Promo codes "
    "cannot be combined.\n\n"
    "- Exchanges are free once per order.\n"
    "- Contact support for damaged goods."
)


def test_a_short_passage_comes_back_whole_without_markdown() -> None:
    passage = "# Delivery\n\n**Standard** delivery takes 3-5 days.\n\n- Express: next day\n1. Pay"
    assert extract_answer("how long is delivery", passage) == (
        "Delivery\n\nStandard delivery takes 3-5 days.\n\nExpress: next day\n1. Pay"
    )


def test_markdown_links_and_code_keep_their_words() -> None:
    assert clean_markdown("See [help](https://x.example/h) and `reset --all`.") == (
        "See help (https://x.example/h) and reset --all."
    )


def test_a_long_passage_gives_the_matching_sentence_and_the_one_after_it() -> None:
    answer = extract_answer("when will I get my refund", RETURNS)
    assert answer == (
        "Refunds are issued within 5 business days after we receive the parcel. "
        "Your bank may need another 3 to 5 days to show the money."
    )


def test_other_sentences_sharing_the_question_words_join_in_passage_order() -> None:
    answer = extract_answer("can opened software be returned?", RETURNS, max_chars=200)
    assert len(answer) <= 200
    assert "Underwear and opened software cannot be returned." in answer
    assert answer.index("You can return") < answer.index("Underwear")


def test_the_answer_never_exceeds_the_limit() -> None:
    for limit in (60, 120, 250, 420):
        assert 0 < len(extract_answer("refund days bank money", RETURNS, max_chars=limit)) <= limit


def test_a_chinese_passage_gives_the_sentence_about_the_question() -> None:
    passage = (
        "退货须知：签收后7天内可以无理由退货，商品需保持完好，配件齐全。"
        "退款将在仓库签收退货后3个工作日内原路退回。"
        "运费险可以抵扣退货运费。优惠券在退款后不予退还。"
        "定制商品、生鲜食品和已拆封的软件不支持无理由退货。"
        "如对退货结果有异议，可以在订单页面申请客服介入。"
    )
    answer = extract_answer("退款多久到账", passage, max_chars=60)
    assert answer.startswith("退款将在仓库签收退货后3个工作日内原路退回。")
    assert len(answer) <= 60


def test_a_question_sharing_nothing_gets_the_opening_of_the_passage() -> None:
    assert extract_answer("zzz", RETURNS).startswith("Returns\nYou can return most items")


def test_one_sentence_longer_than_the_limit_is_cut_at_a_word() -> None:
    answer = extract_answer("warranty", "The warranty " + "covers many things " * 40, max_chars=80)
    assert answer.endswith("…") and len(answer) <= 80
    assert answer.startswith("The warranty covers")


def test_a_non_empty_passage_never_gives_an_empty_answer() -> None:
    for passage in ("```\n```", "- ", "# Heading only", "？", "A" * 1000):
        assert extract_answer("question", passage, max_chars=50)
    assert extract_answer("question", "   ") == ""


def test_with_the_sentences_cosines_the_closest_in_meaning_is_chosen() -> None:
    question = "is there an expiry date on them?"  # shares no word with the answer
    closest = "Gift cards are valid for three years and cannot be exchanged for cash."
    without = extract_answer(question, RETURNS, max_chars=120)
    with_meaning = extract_answer(
        question, RETURNS, max_chars=120, similarity=lambda s: 0.9 if s == closest else 0.8
    )
    assert closest not in without
    assert closest in with_meaning


def test_a_sentence_whose_cosine_is_unknown_leaves_the_choice_to_shared_words() -> None:
    question = "when do refunds arrive"
    by_words = extract_answer(question, RETURNS, max_chars=120)
    partly_known = extract_answer(
        question, RETURNS, max_chars=120, similarity=lambda s: 0.9 if "Promo" in s else None
    )
    assert partly_known == by_words and "Refunds are issued" in by_words


def test_the_best_sentence_alone_is_chosen_as_extract_answer_chooses_it() -> None:
    question = "is there an expiry date on them?"
    closest = "Gift cards are valid for three years and cannot be exchanged for cash."
    sentences = passage_sentences(RETURNS)
    assert closest in sentences
    assert best_sentence(question, sentences, lambda s: 0.9 if s == closest else 0.8) == closest
    by_words = best_sentence("when do refunds arrive", sentences)
    assert by_words is not None and by_words.startswith("Refunds are issued")
    assert by_words in extract_answer("when do refunds arrive", RETURNS, max_chars=120)
    assert best_sentence("anything", []) is None
