"""Text handling shared by the API and the worker: cache keys, language, tokens, sentences."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.knowledge.text import (
    detect_language,
    lexical_tokens,
    normalize_question,
    split_sentences,
)

# --- normalize_question ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "key"),
    [
        ("  How do I RETURN an item?? ", "how do i return an item"),
        ("How   do I return\tan item", "how do i return an item"),
        ('"How do I return an item?"', "how do i return an item"),
        ("如何退货？", "如何退货"),
        ("如何 退货 ！", "如何退货"),
        ("ＩＰｈｏｎｅ　１５怎么退货。", "iphone 15怎么退货"),
        ("¿Qué es esto?", "qué es esto"),
    ],
)
def test_questions_that_differ_only_in_form_share_a_cache_key(asked: str, key: str) -> None:
    assert normalize_question(asked) == key


def test_punctuation_inside_a_question_is_kept() -> None:
    assert normalize_question("Is 4.5 more than 4,5?") == "is 4.5 more than 4,5"


def test_a_question_of_punctuation_only_normalises_to_nothing() -> None:
    assert normalize_question("？！。...") == ""


# --- detect_language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("How do I return an item?", "en"),
        ("如何退货？", "zh"),
        ("我的订单12345为什么还没发货", "zh"),
        ("iPhone 15 退货", "zh"),
        ("我想买一个iPhone 15 Pro Max, 可以分期吗", "zh"),
        ("Do you ship the 龙井茶 gift box to Canada and the United States?", "en"),
        ("12345", "en"),
        ("", "en"),
    ],
)
def test_language_follows_the_share_of_chinese_characters(text: str, lang: str) -> None:
    assert detect_language(text) == lang


# --- lexical_tokens -------------------------------------------------------------------------


def test_english_word_forms_meet_on_one_stem() -> None:
    forms = ["ship", "ships", "shipped", "shipping"]
    assert {token for form in forms for token in lexical_tokens(form)} == {"ship"}
    assert lexical_tokens("charge charges charged charging") == ["charg"] * 4
    assert lexical_tokens("cancelled canceling cancel") == ["cancel"] * 3
    assert lexical_tokens("batteries battery") == ["battery"] * 2


def test_stopwords_and_one_letter_words_are_dropped() -> None:
    assert lexical_tokens("How do I get a refund for my order?") == ["refund", "order"]


def test_numbers_and_codes_are_kept_whole() -> None:
    tokens = lexical_tokens("Error E1023 after 7 days, 4.5 stars, $1,000 and 2FA")
    assert tokens == ["error", "e1023", "7", "day", "4.5", "star", "1000", "2fa"]


def test_full_width_text_tokenises_like_ascii() -> None:
    assert lexical_tokens("ＩＰＨＯＮＥ１５ Ｒｅｆｕｎｄ") == lexical_tokens("iphone15 refund")


def test_chinese_gives_bigrams_and_content_characters() -> None:
    assert sorted(lexical_tokens("退货政策")) == sorted(
        ["退", "货", "政", "策", "退货", "货政", "政策"]
    )


def test_chinese_question_scaffolding_and_particles_are_dropped() -> None:
    tokens = lexical_tokens("请问我的订单为什么还没有发货呢？")
    assert {"订单", "发货", "没有"} <= set(tokens)
    for noise in ("请问", "为什", "什么", "的", "我", "呢", "的订", "单为"):
        assert noise not in tokens


def test_mixed_text_tokenises_both_scripts() -> None:
    tokens = lexical_tokens("iPhone15退货要多久")
    assert "iphone15" in tokens and "退货" in tokens


def test_the_text_module_loads_no_numerical_library() -> None:
    code = (
        "import sys, shared.knowledge.text, shared.knowledge.chunking\n"
        "heavy = {'numpy', 'torch', 'onnxruntime'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- split_sentences ------------------------------------------------------------------------


def test_english_splits_at_sentence_ends_but_not_at_decimals_or_abbreviations() -> None:
    text = "Our rating is 4.5 stars. Prices start at $9.99! Is it free? Yes, e.g. for students."
    assert split_sentences(text) == [
        "Our rating is 4.5 stars.",
        "Prices start at $9.99!",
        "Is it free?",
        "Yes, e.g. for students.",
    ]


def test_a_period_before_a_lowercase_word_or_a_title_does_not_split() -> None:
    assert split_sentences("Call Mr. Smith at approx. five, or visit example.com today.") == [
        "Call Mr. Smith at approx. five, or visit example.com today."
    ]


def test_chinese_splits_after_its_own_punctuation_without_spaces() -> None:
    assert split_sentences(
        "退货请在30天内申请。退款3到5个工作日到账！有问题吗？请联系客服；谢谢"
    ) == [
        "退货请在30天内申请。",
        "退款3到5个工作日到账！",
        "有问题吗？",
        "请联系客服；",
        "谢谢",
    ]


def test_lines_and_list_items_are_sentences_of_their_own() -> None:
    text = "Steps:\n1. Open the app. Then tap Settings.\n- Reset\n\n* Done\n• 完成"
    assert split_sentences(text) == [
        "Steps:",
        "1. Open the app.",
        "Then tap Settings.",
        "- Reset",
        "* Done",
        "• 完成",
    ]


def test_blank_text_has_no_sentences() -> None:
    assert split_sentences("  \n\n \t") == []
