"""Text handling for the tenant knowledge base, shared by the API and the worker.

The API imports this module (answer-cache keys, language of a question), so it is pure Python:
no numpy, no model. Chinese and English are handled with equal care and without a segmenter:

- Chinese is tokenised into character bigrams plus unigrams, the scheme of Lucene's CJK
  analyser. It needs no dictionary (jieba loads one for a second and misses product names),
  matches words of any length through their bigrams, and the unigrams keep single-character
  words ("退", "换") and out-of-vocabulary names retrievable.
- English gets a tiny suffix stemmer (plurals, -ing, -ed, doubled consonant, final e). It is
  deliberately crude: it only has to map the query and the text onto the same form, which a
  deterministic rule does, whatever the form looks like ("charge", "charged", "charging" all
  become "charg").
- Digits stay tokens: order numbers, prices and "7 days" are what customers quote.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Literal

# Han ideographs: the unified block, extension A and the compatibility block. Kana and Hangul
# are not Chinese and are left to the word tokenizer (they are rare in this service).
_CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK_CLASS}]")
_CJK_RUN = re.compile(f"[{_CJK_CLASS}]+")
_WHITESPACE = re.compile(r"\s+")
_SPACE_NEXT_TO_CJK = re.compile(f"(?<=[{_CJK_CLASS}])\\s+|\\s+(?=[{_CJK_CLASS}])")

# --- normalize_question -------------------------------------------------------------------


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def normalize_question(text: str) -> str:
    """The form of a question used as an answer-cache key.

    NFKC (which also folds full-width letters, digits and ？！， to ASCII), casefold, whitespace
    collapsed to one space and removed next to Chinese characters (Chinese is written without
    spaces, so "如何 退货" and "如何退货" are one question), then punctuation stripped from both
    ends (。？！ included). Punctuation inside the question is kept: it can change the meaning.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _WHITESPACE.sub(" ", text)
    text = _SPACE_NEXT_TO_CJK.sub("", text)
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or _is_punctuation(text[start])):
        start += 1
    while end > start and (text[end - 1].isspace() or _is_punctuation(text[end - 1])):
        end -= 1
    return text[start:end]


# --- detect_language ----------------------------------------------------------------------

_ZH_SHARE = 0.2
_SHORT_TEXT_LETTERS = 16


def detect_language(text: str) -> Literal["en", "zh"]:
    """ "zh" when Chinese characters are a meaningful share of the letters, else "en".

    Counted over letters only (digits, spaces and punctuation say nothing): "zh" from 20 %
    Chinese characters, or from 2 of them in a short text ("iPhone 15 Pro Max 退货"). An English
    sentence that quotes one product name in Chinese stays "en". A text without letters is "en".
    """
    letters = cjk = 0
    for char in text:
        if _CJK_CHAR.match(char):
            cjk += 1
            letters += 1
        elif char.isalpha():
            letters += 1
    if cjk == 0:
        return "en"
    if cjk >= _ZH_SHARE * letters or (cjk >= 2 and letters <= _SHORT_TEXT_LETTERS):
        return "zh"
    return "en"


# --- lexical_tokens -----------------------------------------------------------------------

# English function words and the filler of support questions ("please", "hi").
_EN_STOPWORD_TEXT = """
    a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does
    doesn't doing don't down during each either else etc few for from further get gets got had
    hadn't has hasn't have haven't having he her here hers herself him himself his how i i'd
    i'll i'm i've if in into is isn't it it's its itself just let let's me might more most must
    mustn't my myself need no nor not now of off on once only or other ought our ours ourselves
    out over own per please same shall shan't she should shouldn't so some such than thank
    thanks that that's the their theirs them themselves then there there's these they they'd
    they'll they're they've this those through to too under until up upon us very via was wasn't
    we we'd we'll we're we've were weren't what what's when when's where where's whether which
    while who who's whom why why's will with won't would wouldn't yet you you'd you'll you're
    you've your yours yourself yourselves hi hello hey ok okay e.g i.e
"""
_EN_STOPWORDS = frozenset(_EN_STOPWORD_TEXT.split())

# Chinese runs are first cut at question scaffolding, particles and pronouns, which carry no
# topic and would otherwise make noise bigrams with their neighbours ("我的订单为什么还没发货"
# gives "订单" and "还没发货", not "的订", "单为", "么还"). Longest phrases first.
_ZH_CUT = re.compile(
    "为什么|怎么办|怎么样|是不是|有没有|可不可以|可以|什么|怎么|如何|请问|一下|是否|怎样|能否|"
    "这个|那个|的话|我们|你们|他们|您好|你好|[的吗呢吧啊呀哦嘛了是我你您他她它]"
)
# Characters that carry grammar rather than topic: dropped as unigrams, kept inside bigrams
# ("没有", "不能", "在线" keep their meaning).
_ZH_FUNCTION_CHARS = frozenset(
    "们在有么和与及或也都就还又这那个把被给让对从到会能要想请一不得地着过为什怎何"
)
_ZH_STOP_BIGRAMS = frozenset(["一个", "一些", "这些", "那些", "还是", "或者", "以及", "如果"])

# A number (with decimal or thousands separators) or a word; non-Latin scripts other than Han
# fall into the word branch too.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+(?![^\W_])|[^\W_]+(?:'[^\W_]+)?")
_VOWELS = frozenset("aeiouy")


@functools.lru_cache(maxsize=1 << 16)  # words repeat (Zipf): indexing 100,000 texts stems few
def _stem(word: str) -> str:
    """Light English stemmer: plural, -ing, -ed, doubled consonant, final e.

    Applied to query and text alike, so only determinism matters: "shipping", "shipped" and
    "ships" all give "ship"; "cancelled" and "canceling" give "cancel"; "charge", "charges",
    "charged" give "charg".
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses") or word.endswith(("xes", "ches", "shes", "zzes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    stripped = False
    for suffix in ("ing", "ed"):
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= 3 and _VOWELS.intersection(stem):
            word, stripped = stem, True
            break
    if stripped and word.endswith("i"):  # applied -> appli -> apply, like applies -> apply
        word = word[:-1] + "y"
    if len(word) >= 3 and word[-1] == word[-2] and word[-1] not in _VOWELS and word[-1] != "s":
        word = word[:-1]
    if len(word) >= 4 and word.endswith("e"):
        word = word[:-1]
    return word


def _latin_tokens(text: str) -> list[str]:
    tokens = []
    for token in _TOKEN.findall(text):
        if token[0].isdigit() and ("," in token or "." in token):
            tokens.append(token.replace(",", ""))  # "1,000" and "1000" are one number
            continue
        if token in _EN_STOPWORDS:
            continue
        token = token.removesuffix("'s")
        if token.isdigit():
            tokens.append(token)
        elif len(token) > 1 and token not in _EN_STOPWORDS:
            tokens.append(_stem(token))
    return tokens


def _cjk_tokens(run: str) -> list[str]:
    tokens: list[str] = []
    for phrase in _ZH_CUT.split(run):
        tokens += [char for char in phrase if char not in _ZH_FUNCTION_CHARS]
        bigrams = map(str.__add__, phrase, phrase[1:])
        tokens += [bigram for bigram in bigrams if bigram not in _ZH_STOP_BIGRAMS]
    return tokens


def lexical_tokens(text: str) -> list[str]:
    """Tokens for lexical matching (IDF coverage, BM25, extractive overlap), in text order
    (within a Chinese phrase: its unigrams, then its bigrams).

    - NFKC + casefold first, so full-width "ＩＰＨＯＮＥ１５" matches "iphone15".
    - Latin words: lowercased, English stopwords and one-letter words dropped, light stemming
      (see ``_stem``); "customer's" loses its "'s".
    - Numbers are kept whole: "4.5" and "1,000" (as "1000") are one token each; mixed tokens
      like "a12345", "2fa" or "mp3" are kept as they are.
    - Chinese runs (no segmenter): cut at question scaffolding (可以 什么 怎么 如何 请问 为什么
      ...), particles (的 了 吗 呢 吧 是 ...) and pronouns (我 你 您 ...), then every character
      bigram plus every unigram, except unigrams of function characters (在 有 也 都 不 ...).
      Bigrams make "退货" not match "货退", unigrams keep one-character words and recall.
    - Duplicates are kept (term frequency matters to BM25); callers wanting a set take one.
    """
    text = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    tokens: list[str] = []
    position = 0
    for run in _CJK_RUN.finditer(text):
        tokens += _latin_tokens(text[position : run.start()])
        tokens += _cjk_tokens(run.group())
        position = run.end()
    tokens += _latin_tokens(text[position:])
    return tokens


# --- split_sentences ----------------------------------------------------------------------

# A list marker at the start of a line: "- ", "* ", "• ", "1. ", "1) ".
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+")
# Candidate sentence ends, with any closing quotes or brackets that belong to the sentence.
_SENTENCE_END = re.compile("(?:[。！？；!?]+|\u2026+|\\.+)[\"'\u201d\u2019\u300d\u300f\uff09)\\]]*")
# Words that a period does not end. Dotted forms like "e.g" and "a.m" are matched by pattern.
_ABBREVIATION_TEXT = """
    mr mrs ms dr prof sr jr st vs approx incl excl fig no nos dept est inc ltd co corp jan feb
    mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
"""
_ABBREVIATIONS = frozenset(_ABBREVIATION_TEXT.split())
_WORD_BEFORE = re.compile(r"([^\W\d_]+(?:\.[^\W\d_]+)*)$")
_DOTTED_ABBREVIATION = re.compile(r"^[^\W\d_](?:\.[^\W\d_])+$")


def _ends_sentence(line: str, end: re.Match[str]) -> bool:
    mark = end.group()
    after = line[end.end() :]
    if mark[0] in "。！？；":
        return True
    next_char = after.lstrip()[:1]
    if not next_char:
        return True
    if _CJK_CHAR.match(after[:1]):  # "Done.然后..." needs no space
        return True
    if not after[:1].isspace():  # "4.5", "example.com", "?q=1"
        return False
    if mark[0] in "!?\u2026":
        return True
    if next_char.islower():  # "e.g. this", "approx. five": not a sentence start
        return False
    word = _WORD_BEFORE.search(line[: end.start()])
    if word and len(mark) == 1:
        before = word.group(1).casefold()
        if before in _ABBREVIATIONS or _DOTTED_ABBREVIATION.match(before):
            return False
    return True


def _split_line(line: str) -> list[str]:
    marker = _LIST_ITEM.match(line)
    body_start = marker.end() if marker else 0
    sentences = []
    start = 0
    for end in _SENTENCE_END.finditer(line, body_start):
        if _ends_sentence(line, end):
            sentences.append(line[start : end.end()].strip())
            start = end.end()
    sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, punctuation and list markers kept, empty pieces dropped.

    Every line is split on its own, so a newline always ends a sentence and every bullet or
    numbered item ("- ", "* ", "1. ") starts one. Chinese ends at 。！？； with no space needed.
    English ends at . ! ? followed by a space, except decimals and URLs (no space), known
    abbreviations ("e.g.", "approx.", "Mr.") and periods followed by a lowercase word.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        sentences += _split_line(line)
    return sentences
