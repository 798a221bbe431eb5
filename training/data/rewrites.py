"""Rewordings of a customer question that keep its meaning: curated synonyms and templates, in
English and Chinese.

The synonym groups hold words customers use for the same thing in this domain, so the answer
stays right whichever is used. Some pairs that look alike are left out on purpose: 退货 (return),
退款 (refund) and 换货 (exchange) are three requests with three rules (7 days; 3–5 working days;
day 8 to 15), as are "return" and "refund" — swapping them would pair a question with an answer
to another one. Compounds that would break are protected (智能 is not 智 + 能; 怎么办 is not
如何办; 中通快递 is a carrier's name).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Lang = Literal["en", "zh"]


@dataclass(frozen=True)
class SynonymGroup:
    words: tuple[str, ...]
    """Interchangeable in both directions."""


@dataclass(frozen=True)
class OneWaySynonym:
    source: str
    targets: tuple[str, ...]
    """``source`` may become any of these, never the other way (能 is in too many compounds to
    be replaced, 可以 is not)."""


SynonymRule = SynonymGroup | OneWaySynonym

EN_SYNONYMS: tuple[SynonymRule, ...] = (
    SynonymGroup(("shipping fee", "delivery fee", "delivery charge", "postage")),
    SynonymGroup(("shipping", "delivery")),
    SynonymGroup(("my order", "my purchase")),
    SynonymGroup(("parcel", "package")),
    SynonymGroup(("item", "product")),
    SynonymGroup(("get my money back", "get a refund")),
    SynonymGroup(("send it back", "return it")),
    SynonymGroup(("broken", "faulty", "defective")),
    SynonymGroup(("warranty", "guarantee")),
    SynonymGroup(("bought", "purchased")),
    SynonymGroup(("buy", "purchase")),
    SynonymGroup(("earbuds", "earphones")),
    SynonymGroup(("headphones", "headset")),
    SynonymGroup(("wi-fi", "wifi")),
    SynonymGroup(("how do I", "how can I")),
    SynonymGroup(("can I", "is it possible to")),
    OneWaySynonym("receive", ("get",)),
)

ZH_SYNONYMS: tuple[SynonymRule, ...] = (
    SynonymGroup(("运费", "邮费")),
    SynonymGroup(("快递", "物流")),
    SynonymGroup(("包邮", "免运费")),
    SynonymGroup(("怎么", "如何", "怎样")),
    SynonymGroup(("多久", "多长时间")),
    SynonymGroup(("东西", "商品")),
    SynonymGroup(("退款", "退钱")),
    SynonymGroup(("收到", "拿到")),
    SynonymGroup(("坏了", "出问题了")),
    SynonymGroup(("保修", "质保")),
    SynonymGroup(("价保", "价格保护")),
    SynonymGroup(("发货", "发出")),
    SynonymGroup(("无线网", "Wi-Fi", "wifi")),
    OneWaySynonym("可以", ("能",)),
    OneWaySynonym("路由器", ("路由",)),
)

# Spans no synonym may touch: compounds and names that contain a synonym.
EN_PROTECTED = ("order number", "my orders", "lumen home", "sf express", "zto express")
ZH_PROTECTED = (
    "怎么办",
    "怎么样",
    "怎么回事",
    "中通快递",
    "顺丰快递",
    "普通快递",
    "快递柜",
    "快递员",
    "我的订单",
    "可以吗",  # "可以吗？" alone becomes "能吗？", which reads as a fragment
)

EN_TEMPLATES = (
    "Hi, {q_lower}",
    "Hello! {q}",
    "Quick question: {q}",
    "{q_closed} Thanks!",
    "Could you help me with this? {q}",
    "Sorry to bother you. {q}",
    "Hey, {q_lower}",
    "{q_closed} Thank you in advance.",
)
ZH_TEMPLATES = (
    "请问{q}",
    "你好，{q}",
    "{q_open}呢？",
    "{q_closed}谢谢！",
    "麻烦问一下，{q}",
    "在吗？{q}",
    "想咨询一下，{q}",
    "亲，{q}",
)

# Openers lower-cased after "Hi," ("Hi, how do I …"); a name or "I" is not. The question
# openers among them say a sentence without a mark is a question ("?" rather than ".").
_EN_OPENERS = re.compile(
    r"^(How|What|When|Where|Why|Which|Who|Can|Could|Do|Does|Did|Is|Are|Will|Would|Should|"
    r"My|A|An|The|Any)\b"
)
_EN_CLOSED = re.compile(r"[.?!…]$")
_ZH_CLOSING = re.compile(r"[？?。！!，,~～…\s]+$")
_ZH_QUESTION = re.compile(r"吗|呢|怎|什么|多少|几|哪|谁|是否|能不能|可不可以|有没有|？|\?")
# A question that already ends in a particle takes no 呢 ("可以退货吗呢" is not Chinese).
_ZH_FINAL_PARTICLE = re.compile(r"[吗呢吧啊么嘛呀]$")


def synonym_rewrites(question: str, lang: Lang) -> list[str]:
    """Every rewording of ``question`` that swaps one synonym group's word (all its
    occurrences) for another of the group; distinct, the original excluded."""
    rules = EN_SYNONYMS if lang == "en" else ZH_SYNONYMS
    protected = EN_PROTECTED if lang == "en" else ZH_PROTECTED
    masked, restore = _mask(question, protected)
    rewrites: list[str] = []
    for rule in rules:
        pairs = (
            [(word, other) for word in rule.words for other in rule.words if other != word]
            if isinstance(rule, SynonymGroup)
            else [(rule.source, target) for target in rule.targets]
        )
        for word, replacement in pairs:
            pattern = _word_pattern(word, lang)
            if pattern.search(masked) is None:
                continue
            rewritten = restore(pattern.sub(_replacer(replacement), masked))
            if rewritten != question and rewritten not in rewrites:
                rewrites.append(rewritten)
    return rewrites


def template_rewrites(question: str, lang: Lang) -> list[str]:
    """``question`` in each template of its language that fits it; distinct, the original
    excluded."""
    question = question.strip()
    rewrites: list[str] = []
    if lang == "en":
        opener = _EN_OPENERS.search(question)
        asks = opener is not None and opener[0] not in ("My", "A", "An", "The")
        lowered = _EN_OPENERS.sub(lambda match: match[0].lower(), question, count=1)
        closed = question if _EN_CLOSED.search(question) else question + ("?" if asks else ".")
        for template in EN_TEMPLATES:
            rewrites.append(template.format(q=question, q_lower=lowered, q_closed=closed))
    else:
        opened = _ZH_CLOSING.sub("", question)
        closed = (
            question
            if opened != question
            else question + ("？" if _ZH_QUESTION.search(question) else "。")
        )
        for template in ZH_TEMPLATES:
            if template.startswith("请问") and question.startswith("请问"):
                continue
            if "{q_open}" in template and (
                _ZH_FINAL_PARTICLE.search(opened) or not _ZH_QUESTION.search(opened)
            ):
                continue  # 呢 follows a question word: "运费怎么算呢？", not "东西坏了呢？"
            rewrites.append(template.format(q=question, q_open=opened, q_closed=closed))
    return [text for text in dict.fromkeys(rewrites) if text != question]


def _word_pattern(word: str, lang: Lang) -> re.Pattern[str]:
    if lang == "en":
        # with the article before it, which may have to change ("an item" → "a product")
        return re.compile(
            rf"(?<![\w-])(?:(?P<article>an?)\s+)?(?P<word>{re.escape(word)})(?![\w-])",
            re.IGNORECASE,
        )
    # Chinese has no word boundaries; the protected compounds are masked instead. A Latin
    # member ("Wi-Fi") still needs them, or "wifi" would match inside "wifi6".
    if word.isascii():
        return re.compile(
            rf"(?<![A-Za-z0-9-])(?P<word>{re.escape(word)})(?![A-Za-z0-9-])", re.IGNORECASE
        )
    return re.compile(f"(?P<word>{re.escape(word)})")


def _replacer(replacement: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        found = match["word"]
        new = replacement
        if found[:1].isupper() and new[:1].islower():  # "Shipping …" → "Delivery …"
            new = new[:1].upper() + new[1:]
        article = match.groupdict().get("article")
        if not article:
            return new
        wanted = "an" if new[:1].lower() in "aeiou" else "a"
        if article[:1].isupper():
            wanted = wanted.capitalize()
        return f"{wanted} {new}"

    return replace


def _mask(text: str, protected: Sequence[str]) -> tuple[str, Callable[[str], str]]:
    """``text`` with protected spans replaced by private-use markers, and the way back."""
    originals: list[str] = []

    def hide(match: re.Match[str]) -> str:
        originals.append(match[0])
        return chr(0xE000 + len(originals) - 1)

    if protected:
        pattern = re.compile(
            "|".join(re.escape(p) for p in sorted(protected, key=len, reverse=True)), re.IGNORECASE
        )
        text = pattern.sub(hide, text)

    def restore(masked: str) -> str:
        for number, original in enumerate(originals):
            masked = masked.replace(chr(0xE000 + number), original)
        return masked

    return text, restore
