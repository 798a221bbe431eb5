"""What a tenant puts into its knowledge base, as pydantic models: documents, FAQ entries,
intents and the tenant's own settings.

The API, the CLI (``chatq kb ingest``, ``chatq intents load``) and the worker all read these
shapes from here, so a definition that was accepted is one the worker can run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EXTERNAL_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
INTENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A placeholder in an answer template: {order_id}, {status_zh}. Nothing else is interpreted,
# so a template can never reach attributes or items the way str.format could.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")

MAX_DOCUMENT_CHARS = 200_000
MAX_TITLE_CHARS = 500
MAX_QUESTION_CHARS = 2_000
MAX_ANSWER_CHARS = 10_000
MAX_ALTERNATIVES = 50
MAX_INTENT_EXAMPLES = 200
MAX_PATTERNS = 50

Lang = Literal["en", "zh"]
LANGUAGES: tuple[Lang, ...] = ("en", "zh")


def is_valid_external_id(value: str) -> bool:
    return EXTERNAL_ID_PATTERN.fullmatch(value) is not None


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class LocalizedText(BaseModel):
    """A text per language; ``pick`` falls back to whichever language exists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    en: str | None = Field(None, max_length=MAX_ANSWER_CHARS)
    zh: str | None = Field(None, max_length=MAX_ANSWER_CHARS)

    @model_validator(mode="before")
    @classmethod
    def _from_plain_string(cls, value: object) -> object:
        # One string serves every language.
        return {"en": value, "zh": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _at_least_one(self) -> LocalizedText:
        if not (self.en or "").strip() and not (self.zh or "").strip():
            raise ValueError("give the text in at least one language (en or zh)")
        return self

    def pick(self, lang: str) -> str:
        preferred = self.zh if lang == "zh" else self.en
        return (preferred or self.en or self.zh or "").strip()


class DocumentIn(BaseModel):
    """``PUT /v1/knowledge/documents/{id}``: Markdown or plain text."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS)
    lang: Lang | None = None

    _check_title = field_validator("title")(_not_blank)
    _check_text = field_validator("text")(_not_blank)


class FaqIn(BaseModel):
    """``PUT /v1/knowledge/faq/{id}``: a question with the answer to give verbatim."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    answer: str = Field(min_length=1, max_length=MAX_ANSWER_CHARS)
    alternatives: list[Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]] = Field(
        default_factory=list, max_length=MAX_ALTERNATIVES
    )
    lang: Lang | None = None

    _check_question = field_validator("question")(_not_blank)
    _check_answer = field_validator("answer")(_not_blank)

    @field_validator("alternatives")
    @classmethod
    def _check_alternatives(cls, values: list[str]) -> list[str]:
        return [_not_blank(value) for value in values]


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {pattern!r} ({error})") from None


class SlotSpec(BaseModel):
    """A value taken from the customer's words: the first capture group of ``pattern`` (or the
    whole match when it has none). ``ask`` is answered when a required slot is missing."""

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(min_length=1, max_length=1000)
    required: bool = False
    ask: LocalizedText | None = None

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        if _compile(value).groups > 1:
            raise ValueError("a slot pattern may have at most one capture group")
        return value

    @model_validator(mode="after")
    def _required_needs_ask(self) -> SlotSpec:
        if self.required and self.ask is None:
            raise ValueError("a required slot needs `ask`: what to say when it is missing")
        return self


class TemplateHandler(BaseModel):
    """A fixed answer with the slots filled in."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["template"]
    answer: LocalizedText


class HttpHandler(BaseModel):
    """Calls the business backend (e.g. an order look-up); its JSON object's top-level fields
    and the slots fill ``answer``. Signed like the webhooks."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["http"]
    url: str = Field(min_length=1, max_length=2000)
    method: Literal["GET", "POST"] = "GET"
    timeout_s: float = Field(3.0, gt=0, le=10)
    answer: LocalizedText
    not_found: LocalizedText | None = None  # the backend answered 404
    error: LocalizedText | None = None  # any other failure: timeout, 5xx, not JSON

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "{")):
            raise ValueError("the handler URL must start with http:// or https://")
        return value


class HandoffHandler(BaseModel):
    """Tells the customer a person takes over; the job says ``handoff: true`` and a
    ``job.handoff`` webhook goes out."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["handoff"]
    answer: LocalizedText


Handler = Annotated[TemplateHandler | HttpHandler | HandoffHandler, Field(discriminator="type")]


class IntentIn(BaseModel):
    """``PUT /v1/intents/{name}``. Recognised by ``patterns`` (regular expressions) and
    ``keywords`` (plain substrings), which win when they match, or else by similarity to
    ``examples`` above ``threshold``."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field("", max_length=2000)
    examples: list[Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]] = Field(
        default_factory=list, max_length=MAX_INTENT_EXAMPLES
    )
    patterns: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=list, max_length=MAX_PATTERNS
    )
    keywords: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=MAX_PATTERNS
    )
    slots: dict[str, SlotSpec] = Field(default_factory=dict, max_length=10)
    handler: Handler
    threshold: float | None = Field(None, gt=0, le=1)

    @field_validator("patterns")
    @classmethod
    def _check_patterns(cls, values: list[str]) -> list[str]:
        for value in values:
            _compile(value)
        return values

    @field_validator("slots")
    @classmethod
    def _check_slot_names(cls, slots: dict[str, SlotSpec]) -> dict[str, SlotSpec]:
        for name in slots:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
                raise ValueError(f"slot name {name!r} must be an identifier (letters, _, digits)")
        return slots

    @model_validator(mode="after")
    def _recognisable(self) -> IntentIn:
        if not (self.examples or self.patterns or self.keywords):
            raise ValueError("an intent needs examples, patterns or keywords to be recognised")
        return self


class IntentDefinition(IntentIn):
    """An intent with its name, as the YAML files of ``chatq intents load`` hold it."""

    name: str = Field(min_length=1, max_length=64)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not INTENT_NAME_PATTERN.fullmatch(value):
            raise ValueError("intent names are 1-64 characters of A-Z a-z 0-9 . _ -")
        return value


# the moderation library's categories (shared.moderation.CATEGORIES; a test keeps them equal),
# spelled here so the API validates settings without loading the lexicons
ModerationCategory = Literal[
    "profanity", "abuse", "sexual", "violence", "self-harm", "politics", "custom"
]
MODERATION_CATEGORIES: tuple[str, ...] = get_args(ModerationCategory)
ModerationAction = Literal["block", "mask", "flag"]
MAX_PII_PATTERNS = 50


class ModerationSettings(BaseModel):
    """A tenant's moderation: an action per category over the defaults, and its safe answer."""

    model_config = ConfigDict(extra="forbid")

    actions: dict[ModerationCategory, ModerationAction] = Field(default_factory=dict)
    """``block`` answers with the safe answer, ``mask`` stars the words, ``flag`` only marks."""
    safe_answer: LocalizedText | None = None
    """Said instead of a blocked question or answer (default: a polite refusal)."""


class PiiPatternIn(BaseModel):
    """A tenant's own kind of personal data, found by a regular expression."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
    """Names the placeholder: ``customer_no`` becomes ``<CUSTOMER_NO_1>``."""
    regex: str = Field(min_length=1, max_length=500)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            re.compile(regex)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from None
        return regex


class TenantSettings(BaseModel):
    """How the router answers for this tenant when its knowledge has nothing relevant."""

    model_config = ConfigDict(extra="forbid")

    fallback_answer: LocalizedText | None = None
    """Said when nothing relevant is known; name how to reach a person here."""
    llm_fallback: bool = False
    """Let the model answer on its own when no knowledge matches (off: the fallback answer)."""
    builtin_handoff: bool = True
    """Hand a request for a person ("转人工") over with the built-in handoff intent when the
    tenant has knowledge and defines no handoff intent of its own."""
    moderation: ModerationSettings = Field(default_factory=lambda: ModerationSettings())
    """What moderation does per category, and what a blocked customer is told."""
    pii_patterns: list[PiiPatternIn] = Field(default_factory=list, max_length=MAX_PII_PATTERNS)
    """The tenant's own personal data (customer numbers, …): anonymised like phone numbers."""


def fill_template(template: str, values: Mapping[str, object]) -> str:
    """``template`` with each ``{name}`` replaced by ``values[name]``; unknown names stay."""

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return match.group(0) if value is None else str(value)

    return PLACEHOLDER.sub(replace, template)
