"""What the anonymiser looks for: the built-in kinds, tenant patterns, and the spans it finds."""

from __future__ import annotations

import re
from dataclasses import dataclass

# re's parser, to read a tenant's pattern; typeshed has no stubs for these private modules, and
# the public sre_parse and sre_constants aliases are deprecated since Python 3.11
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Any, Final, Literal

PiiKind = Literal["EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IBAN", "IP", "CUSTOM"]
"""The built-in kinds. A tenant pattern's spans carry the pattern's own upper-cased name (its
category is CUSTOM), so its placeholders read ``<ORDER_REF_1>`` rather than ``<CUSTOM_1>``."""

BUILTIN_KINDS: Final[tuple[str, ...]] = ("EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IBAN", "IP")

PATTERN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
MAX_PATTERN_LENGTH: Final = 500

_REPEATS = frozenset(
    op
    for op in (
        sre_constants.MAX_REPEAT,
        sre_constants.MIN_REPEAT,
        getattr(sre_constants, "POSSESSIVE_REPEAT", None),
    )
    if op is not None
)


@dataclass(frozen=True)
class PiiSpan:
    """One piece of personal data, as offsets into the original text (``text[start:end]``)."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class PiiPattern:
    """A tenant-configured pattern; its matches become ``<NAME_n>`` placeholders.

    Validated at construction, because a tenant's regex runs on every message of that tenant:
    it must compile, stay short, never match the empty string, and avoid the nested
    variable-length repeats (``(a+)+``, ``(\\w+\\s?)*``) that make Python's backtracking
    engine take exponential time.
    """

    name: str
    regex: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PATTERN_NAME.fullmatch(self.name):
            raise ValueError(
                f"PII pattern name {self.name!r} is invalid: use a letter followed by up to 31 "
                "letters, digits or underscores"
            )
        if not isinstance(self.regex, str) or not self.regex:
            raise ValueError(f"PII pattern {self.name!r}: the regex is empty")
        if len(self.regex) > MAX_PATTERN_LENGTH:
            raise ValueError(
                f"PII pattern {self.name!r}: the regex is {len(self.regex)} characters long, "
                f"at most {MAX_PATTERN_LENGTH} are allowed"
            )
        try:
            compiled = re.compile(self.regex)
        except re.error as exc:
            raise ValueError(
                f"PII pattern {self.name!r}: the regex does not compile: {exc}"
            ) from exc
        if compiled.fullmatch("") is not None:
            raise ValueError(f"PII pattern {self.name!r}: the regex matches the empty string")
        problem = _backtracking_risk(sre_parser.parse(self.regex), inside_repeat=False)
        if problem:
            raise ValueError(f"PII pattern {self.name!r}: {problem}")

    @property
    def kind(self) -> str:
        """The placeholder kind: the name upper-cased."""
        return self.name.upper()


def _backtracking_risk(parsed: Any, *, inside_repeat: bool) -> str | None:
    """Say why a parsed regex risks catastrophic backtracking, or None.

    A cheap, conservative check on the parse tree: a variable-length repeat (``+``, ``*``,
    ``{1,9}``) nested inside another repeat can split one run of text in exponentially many
    ways. Fixed counts inside a repeat (``(\\d{3}-)+``) are fine. Back-references are refused
    because no bound on their cost can be read off the pattern.
    """
    for op, arg in parsed:
        if op in _REPEATS:
            low, high, sub = arg
            variable = low != high
            if inside_repeat and variable:
                return (
                    "a variable-length repeat inside another repeated group can backtrack "
                    "catastrophically; use fixed counts such as {4} inside a repeated group"
                )
            problem = _backtracking_risk(sub, inside_repeat=inside_repeat or high > 1)
        elif op is sre_constants.SUBPATTERN:
            problem = _backtracking_risk(arg[-1], inside_repeat=inside_repeat)
        elif op is sre_constants.BRANCH:
            problem = next(
                (
                    p
                    for p in (_backtracking_risk(b, inside_repeat=inside_repeat) for b in arg[1])
                    if p
                ),
                None,
            )
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            problem = _backtracking_risk(arg[1], inside_repeat=inside_repeat)
        elif op is getattr(sre_constants, "ATOMIC_GROUP", None):
            problem = _backtracking_risk(arg, inside_repeat=inside_repeat)
        elif op is sre_constants.GROUPREF_EXISTS:
            problem = _backtracking_risk(arg[1], inside_repeat=inside_repeat) or (
                _backtracking_risk(arg[2], inside_repeat=inside_repeat) if arg[2] else None
            )
        elif op is sre_constants.GROUPREF:
            problem = "back-references are not allowed in PII patterns"
        else:
            problem = None
        if problem:
            return problem
    return None
