"""The eval file: a named set of questions, each with what a correct answer must (not) say.

```yaml
name: shop
questions:
  - id: faq-refund-en-1
    kind: faq            # faq | document | multiturn | unanswerable | rule
    lang: en             # en | zh
    turns: ["..."]       # earlier customer messages, asked first in the same session
    question: "bought a kettle 3 days ago and changed my mind, can I send it back?"
    expect:
      all: [["7[- ]?days?", "seven days"], ["packag"]]   # every group must match
      none: ["30[- ]days"]                              # none of these may match
      reference: "You can return it within 7 days ..."  # optional reference answer
```

Patterns are case-insensitive regular expressions, compiled when the file is read so a bad one
is reported with its question id before anything runs. A group of ``all`` may be written as a
single string (one alternative).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

QUESTION_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
PATTERN_FLAGS = re.IGNORECASE


class EvalFileError(ValueError):
    """An eval file that cannot be used; the message names the file, the question and what is
    wrong."""


class QuestionKind(StrEnum):
    """What a question exercises; accuracy is reported per kind."""

    FAQ = "faq"
    DOCUMENT = "document"
    MULTITURN = "multiturn"
    UNANSWERABLE = "unanswerable"
    RULE = "rule"


class Lang(StrEnum):
    EN = "en"
    ZH = "zh"


def _compile(pattern: str) -> re.Pattern[str]:
    if not pattern.strip():
        raise ValueError("a pattern must not be blank (it would match every answer)")
    try:
        return re.compile(pattern, PATTERN_FLAGS)
    except re.error as error:
        raise ValueError(f"bad regex {pattern!r}: {error}") from None


class Expectation(BaseModel):
    """What the answer must say (every group of ``all``, any alternative of a group) and must
    not say (any of ``none``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    all_of: list[list[str]] = Field(default_factory=list, alias="all")
    """Groups of alternative patterns; each group must match the answer."""
    none_of: list[str] = Field(default_factory=list, alias="none")
    """Patterns that must not match the answer."""
    reference: str | None = Field(None, min_length=1)
    """A reference answer: compared by semantic similarity, beside the patterns."""

    _all_compiled: list[list[re.Pattern[str]]] = PrivateAttr(default_factory=list)
    _none_compiled: list[re.Pattern[str]] = PrivateAttr(default_factory=list)

    @field_validator("all_of", mode="before")
    @classmethod
    def _single_string_groups(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [[item] if isinstance(item, str) else item for item in value]
        return value

    @field_validator("all_of")
    @classmethod
    def _groups_compile(cls, value: list[list[str]]) -> list[list[str]]:
        for number, group in enumerate(value, start=1):
            if not group:
                raise ValueError(f"group {number} is empty (it could never match)")
            for pattern in group:
                _compile(pattern)
        return value

    @field_validator("none_of")
    @classmethod
    def _forbidden_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _compile(pattern)
        return value

    @model_validator(mode="after")
    def _something_to_check(self) -> Expectation:
        if not self.all_of and self.reference is None:
            raise ValueError("expect.all must hold at least one group unless a reference is given")
        self._all_compiled = [[_compile(p) for p in group] for group in self.all_of]
        self._none_compiled = [_compile(p) for p in self.none_of]
        return self

    @property
    def required_groups(self) -> list[list[re.Pattern[str]]]:
        return self._all_compiled

    @property
    def forbidden(self) -> list[re.Pattern[str]]:
        return self._none_compiled


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=QUESTION_ID_PATTERN)
    kind: QuestionKind
    lang: Lang
    turns: list[str] = Field(default_factory=list)
    """Earlier customer messages, asked first (in order) in the same session."""
    question: str = Field(min_length=1)
    expect: Expectation

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("turns")
    @classmethod
    def _turns_not_blank(cls, value: list[str]) -> list[str]:
        if any(not turn.strip() for turn in value):
            raise ValueError("a turn must not be blank")
        return value

    @model_validator(mode="after")
    def _multiturn_has_turns(self) -> Question:
        if self.kind is QuestionKind.MULTITURN and not self.turns:
            raise ValueError("a multiturn question needs earlier turns (turns: [...])")
        return self


class QuestionSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._\-]+$")
    """Names the run's JSON file, so letters, digits, ``.``, ``_`` and ``-`` only."""
    description: str | None = None
    questions: list[Question] = Field(min_length=1)

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, value: list[Question]) -> list[Question]:
        seen: set[str] = set()
        for question in value:
            if question.id in seen:
                raise ValueError(f"question {question.id!r}: duplicate id")
            seen.add(question.id)
        return value


def _errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalFileError(f"{path}: a folder, not an eval file") from None
    except UnicodeDecodeError:
        raise EvalFileError(f"{path}: not UTF-8 text") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise EvalFileError(f"{path}: not valid {kind}: {error}") from None


def load_question_set(path: Path) -> QuestionSet:
    """Read and validate an eval file; every problem raises ``EvalFileError``."""
    data = _read(path)
    if not isinstance(data, dict):
        raise EvalFileError(f"{path}: expected a mapping with `name` and `questions`")
    raw_questions = data.get("questions")
    if not isinstance(raw_questions, list) or not raw_questions:
        raise EvalFileError(f"{path}: `questions` must be a non-empty list")
    questions: list[Question] = []
    seen: set[str] = set()
    for number, item in enumerate(raw_questions, start=1):
        raw_id = item.get("id") if isinstance(item, dict) else None
        label = f"question {raw_id!r}" if raw_id else f"question {number}"
        try:
            question = Question.model_validate(item)
        except ValidationError as error:
            raise EvalFileError(f"{path}: {label}: {_errors(error)}") from None
        if question.id in seen:
            raise EvalFileError(f"{path}: {label}: duplicate id")
        seen.add(question.id)
        questions.append(question)
    try:
        return QuestionSet.model_validate({**data, "questions": questions})
    except ValidationError as error:
        raise EvalFileError(f"{path}: {_errors(error)}") from None
