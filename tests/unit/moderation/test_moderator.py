"""The base moderator: what it catches, the classic false positives it must not, masking,
policies, tenant lists and allow-terms."""

from __future__ import annotations

import time

import pytest

from shared.moderation import (
    CATEGORIES,
    DEFAULT_POLICY,
    MASK,
    ModerationPolicy,
    Moderator,
    TermList,
)
from shared.moderation.terms import LANGUAGES, base_lists, glin_lists


@pytest.mark.parametrize(
    ("text", "lang", "category"),
    [
        ("what the fuck is this", "en", "profanity"),
        ("f.u.c.k this page", "en", "profanity"),
        ("F U C K this", "en", "profanity"),
        ("fuuuuck, it broke", "en", "profanity"),
        ("ＦＵＣＫ this", "en", "profanity"),
        ("sh1t service", "en", "profanity"),
        ("$h!t, wrong address", "en", "profanity"),
        ("you are an idiot", "en", "abuse"),
        ("1d10t, the blue one", "en", "abuse"),
        ("motherfucker", "en", "profanity"),
        ("send nudes", "en", "sexual"),
        ("I will kill you", "en", "violence"),
        ("k1ll y0u all", "en", "violence"),
        ("ki11 you", "en", "violence"),
        ("I want to kill myself", "en", "self-harm"),
        ("heil hitler", "en", "politics"),
        ("你们客服都是傻逼吗", "zh", "abuse"),
        ("傻 逼 客服", "zh", "abuse"),
        ("傻*逼", "zh", "abuse"),
        ("傻Ｂ客服", "zh", "abuse"),
        ("傻逼逼逼", "zh", "abuse"),
        ("這他媽的是什麼服務", "zh", "profanity"),
        ("幹你娘", "zh", "profanity"),
        ("约炮吗", "zh", "sexual"),
        ("殺了你", "zh", "violence"),
        ("我不想活了", "zh", "self-harm"),
        ("你们支持台独吗", "zh", "politics"),
    ],
)
def test_catches(base: Moderator, text: str, lang: str, category: str) -> None:
    result = base.check(text, stage="input", lang=lang)
    assert result.flagged
    assert category in result.categories


@pytest.mark.parametrize(
    "text",
    [
        "I live in Scunthorpe",
        "Please assess the damage",
        "Which class of ticket?",
        "The cocktail shaker is back in stock",
        "Delivery to Sussex",
        "Damn good service, thanks!",
        "How do I kill the process that is stuck?",
        "Shoot me an email when it ships",
        "Our therapist recommended it",
        "My Galaxy A55 screen cracked",
        "Order 455 is late",
        "as soon as possible",
        "Hello, hello?",
        "Do you sell garden hoes?",
        "My son loves Suicide Squad",
        "Please send it to Shitterton, Dorset",
        "操作系统升级后打印机连不上了",
        "你们不用操心",
        "衣服洗完很干净",
        "我妈的手机号绑定错了",
        "你妈妈的生日礼物",
        "想死你们了",
        "双十一跳楼价",
        "杀毒软件的激活码",
        "秒杀活动几点开始",
        "月经不调可以吃这个吗",
        "成人票多少钱",
        "本平台独家销售",
        "手机八折活动",
    ],
)
def test_does_not_flag_the_classic_false_positives(base: Moderator, text: str) -> None:
    result = base.check(text, stage="input")
    assert not result.flagged, result.matches
    assert result.text == text
    assert result.as_job_field() == {
        "flagged": False,
        "categories": [],
        "action": None,
        "stage": "input",
    }


def test_a_mild_word_in_a_hostile_sentence_only_flags(base: Moderator) -> None:
    result = base.check("what the hell is going on with my order", stage="input", lang="en")
    assert result.categories == ("profanity",)
    assert result.action == "flag"
    assert result.text == "what the hell is going on with my order"


def test_a_mild_word_never_blocks_even_when_the_policy_blocks_its_category(base: Moderator) -> None:
    strict = base.with_tenant([], ModerationPolicy(actions={"profanity": "block"}))
    assert strict.check("what the hell is going on", stage="input", lang="en").action == "flag"
    assert strict.check("this is bullshit", stage="input", lang="en").action == "block"


def test_mask_replaces_each_span_of_the_original_text(base: Moderator) -> None:
    text = "Oh f.u.c.k, the ｓｈｉｔ parcel is late, fuuuuck"
    result = base.check(text, stage="output", lang="en")
    assert result.action == "mask"
    assert result.text == f"Oh {MASK}, the {MASK} parcel is late, {MASK}"
    assert [text[m.start : m.end] for m in result.matches if m.term == "fuck"][:1] == ["f.u.c.k"]


def test_mask_in_chinese_lands_on_the_original_characters(base: Moderator) -> None:
    result = base.check("他 妈 的到底什么时候发货", stage="output", lang="zh")
    assert result.action == "mask"
    assert result.text == f"{MASK}到底什么时候发货"


def test_the_strictest_action_wins(base: Moderator) -> None:
    result = base.check("you idiot, what the fuck", stage="input", lang="en")
    assert set(result.categories) == {"abuse", "profanity"}
    assert result.action == "block"
    assert result.text == "you idiot, what the fuck"  # block: the caller answers instead
    assert result.as_job_field() == {
        "flagged": True,
        "categories": ["abuse", "profanity"],
        "action": "block",
        "stage": "input",
    }


def test_only_spans_of_masked_categories_are_masked(base: Moderator) -> None:
    result = base.check("fuck, Putin raised the prices", stage="output", lang="en")
    assert result.categories == ("politics", "profanity")
    assert result.action == "mask"
    assert result.text == f"{MASK}, Putin raised the prices"


def test_policy_action_for_takes_the_strictest() -> None:
    assert DEFAULT_POLICY.action_for(["politics"]) == "flag"
    assert DEFAULT_POLICY.action_for(["politics", "profanity"]) == "mask"
    assert DEFAULT_POLICY.action_for(["profanity", "abuse", "politics"]) == "block"
    assert all(DEFAULT_POLICY.action(category) for category in CATEGORIES)
    with pytest.raises(ValueError, match="unknown category"):
        ModerationPolicy(actions={"rudeness": "block"})
    with pytest.raises(ValueError, match="unknown action"):
        ModerationPolicy(actions={"abuse": "delete"})  # type: ignore[dict-item]


def test_a_tenant_policy_changes_the_action(base: Moderator) -> None:
    tenant = base.with_tenant([], ModerationPolicy(actions={"politics": "block"}))
    assert tenant.check("do you support Hamas?", stage="input").action == "block"
    assert base.check("do you support Hamas?", stage="input").action == "flag"


def test_tenant_lists_add_terms_in_any_language(base: Moderator) -> None:
    competitors = TermList("acme-competitors", "custom", ("MegaMart", "优品汇"))
    tenant = base.with_tenant([competitors], ModerationPolicy(actions={"custom": "mask"}))
    result = tenant.check("MEGAMART is cheaper, 優品匯 too", stage="output")
    assert result.categories == ("custom",)
    assert result.text == f"{MASK} is cheaper, {MASK} too"
    assert {m.list_name for m in result.matches} == {"acme-competitors"}
    assert not base.check("MegaMart is cheaper", stage="output").flagged


def test_tenant_allow_terms_override_every_list(base: Moderator) -> None:
    brand = TermList("brand", "custom", (), allow=("Pussy Willow Florist", "小鸡巴士"))
    tenant = base.with_tenant([brand], None)
    assert base.check("小鸡巴士几点到", stage="input", lang="zh").flagged
    assert not tenant.check("小鸡巴士几点到", stage="input", lang="zh").flagged
    assert not tenant.check(
        "Thank you Pussy Willow Florist for the bouquet", stage="input", lang="en"
    ).flagged
    # the allow-term covers only its own words
    assert tenant.check("小鸡巴士的司机是傻逼", stage="input", lang="zh").categories == ("abuse",)


def test_term_lists_are_validated() -> None:
    with pytest.raises(ValueError, match="list name"):
        TermList("bad name!", "custom", ("x",))
    with pytest.raises(ValueError, match="unknown category"):
        TermList("ok", "brand", ("x",))
    with pytest.raises(ValueError, match="non-blank"):
        TermList("ok", "custom", (" ",))


def test_a_single_chinese_character_never_comes_from_the_base_lists_except_the_unambiguous() -> (
    None
):
    single = {
        term
        for lst in base_lists()
        for term in lst.terms
        if len(term) == 1 and "\u4e00" <= term <= "\u9fff"
    }
    assert single <= {"屄", "肏", "屌"}


def test_the_glin_mapping_names_only_entries_the_package_holds() -> None:
    for language in LANGUAGES:
        _, unknown = glin_lists(language)
        assert unknown == [], f"glin-{language}.txt names entries glin-profanity lacks"


def test_stage_is_checked(base: Moderator) -> None:
    with pytest.raises(ValueError, match="stage"):
        base.check("hi", stage="middle")  # type: ignore[arg-type]


def test_the_base_is_built_once_and_fast(base: Moderator) -> None:
    assert Moderator.base() is base
    started = time.perf_counter()
    Moderator.from_lists(base_lists())
    assert time.perf_counter() - started < 2.0


def test_the_api_validates_the_categories_the_library_knows() -> None:
    from shared.knowledge.schemas import MODERATION_CATEGORIES
    from shared.moderation import CATEGORIES

    assert tuple(MODERATION_CATEGORIES) == tuple(CATEGORIES)
