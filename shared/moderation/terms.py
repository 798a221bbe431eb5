"""Term lists: a tenant's own, and the base lists built from packages and the files we ship.

A shipped list file (``lists/<lang>/*.txt``) is plain text in sections::

    # comments say where the entries came from and why
    [abuse]            # category, severity "severe"
    idiot|s            # "idiot" and "idiots": the word, then suffixes that also count
    [abuse mild]       # category and severity (severe | mild | context)
    stupid
    [allow]            # never flag inside these ("操作", "Scunthorpe")
    [exclude]          # only in glin-*.txt: entries of the glin-profanity list we do not use

``glin-<lang>.txt`` says how each entry of glin-profanity's list for that language is used:
entries it does not name are ``[profanity]``; the glin lists are read from the installed
package (MIT), never copied here.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shared.moderation.policy import CATEGORIES, SEVERITIES, Severity

LIST_NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_TERM_CHARS = 200
LISTS_DIR = Path(__file__).with_name("lists")
LANGUAGES = {"en": "english", "zh": "chinese"}
"""Our language codes → glin-profanity's file names."""


@dataclass(frozen=True)
class TermList:
    """A list of words or phrases (any language) in one category; also how base lists are held."""

    name: str
    category: str
    terms: tuple[str, ...]
    allow: tuple[str, ...] = ()
    """Never flag text inside these (a tenant's brand "Scunthorpe Ltd"), whatever list matched."""
    severity: Severity = "severe"

    def __post_init__(self) -> None:
        if not LIST_NAME_PATTERN.match(self.name):
            raise ValueError(f"list name {self.name!r} must match {LIST_NAME_PATTERN.pattern}")
        if self.category not in CATEGORIES:
            raise ValueError(
                f"list {self.name}: unknown category {self.category!r};"
                f" known: {', '.join(CATEGORIES)}"
            )
        if self.severity not in SEVERITIES:
            raise ValueError(f"list {self.name}: unknown severity {self.severity!r}")
        for kind in ("terms", "allow"):
            values = tuple(getattr(self, kind))
            for value in values:
                if not isinstance(value, str) or not value.strip():
                    raise ValueError(f"list {self.name}: {kind} must be non-blank strings")
                if len(value) > MAX_TERM_CHARS:
                    raise ValueError(f"list {self.name}: a term is over {MAX_TERM_CHARS} chars")
            object.__setattr__(self, kind, values)


class ListFileError(ValueError):
    """A shipped list file that cannot be read; names the file and line."""


@dataclass(frozen=True)
class ListFile:
    """One parsed list file: terms by (category, severity), allow-terms and exclusions."""

    terms: dict[tuple[str, Severity], list[str]]
    allow: list[str]
    exclude: list[str]


def expand(entry: str) -> list[str]:
    """``idiot|s`` → ["idiot", "idiots"]."""
    word, *suffixes = (part.strip() for part in entry.split("|"))
    return [word, *(word + suffix for suffix in suffixes if suffix)]


def parse_list_file(path: Path) -> ListFile:
    terms: dict[tuple[str, Severity], list[str]] = defaultdict(list)
    allow: list[str] = []
    exclude: list[str] = []
    target: list[str] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            words = line[1:-1].split()
            if words == ["allow"]:
                target = allow
            elif words == ["exclude"]:
                target = exclude
            elif (section := _term_section(words)) is not None:
                target = terms[section]
            else:
                raise ListFileError(f"{path}:{number}: unknown section {line}")
            continue
        if target is None:
            raise ListFileError(f"{path}:{number}: an entry before any [section]")
        target.extend(expand(line) if target is not exclude else [line])
    return ListFile(dict(terms), allow, exclude)


def _term_section(words: list[str]) -> tuple[str, Severity] | None:
    """The key of a ``[category]`` or ``[category severity]`` section (severe by default);
    None for any other header."""
    if not 1 <= len(words) <= 2 or words[0] not in CATEGORIES:
        return None
    if len(words) == 1:
        return words[0], "severe"
    for severity in SEVERITIES:
        if words[1] == severity:
            return words[0], severity
    return None


def _glin_words(language: str) -> list[str]:
    """glin-profanity's list for a language, read from the installed package without importing
    it (its import builds filters we do not use)."""
    spec = importlib.util.find_spec("glin_profanity")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("glin-profanity is not installed (pip install glin-profanity==4.1.0)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "dictionaries"
    data = json.loads((folder / f"{LANGUAGES[language]}.json").read_text(encoding="utf-8"))
    return [word for word in data["words"] if isinstance(word, str) and word.strip()]


def glin_lists(language: str) -> tuple[list[TermList], list[str]]:
    """glin-profanity's list for ``language`` split into categories by ``glin-<lang>.txt``;
    also returns the mapping entries that the package's list does not hold (a typo or a new
    glin version: tests assert there are none)."""
    mapping = parse_list_file(LISTS_DIR / f"glin-{language}.txt")
    words = _glin_words(language)
    known = set(words)
    placed: dict[str, tuple[str, Severity]] = {}
    for (category, severity), entries in mapping.terms.items():
        for entry in entries:
            placed[entry] = (category, severity)
    excluded = set(mapping.exclude)
    unknown = sorted((set(placed) | excluded) - known)
    grouped: dict[tuple[str, Severity], list[str]] = defaultdict(list)
    for word in words:
        if word not in excluded:
            grouped[placed.get(word, ("profanity", "severe"))].append(word)
    lists = [
        TermList(
            _list_name("glin", language, category, severity), category, tuple(entries), (), severity
        )
        for (category, severity), entries in sorted(grouped.items())
    ]
    return lists, unknown


def _list_name(source: str, language: str, category: str, severity: Severity) -> str:
    suffix = "" if severity == "severe" else f".{severity}"
    return f"{source}.{language}.{category}{suffix}"


def shipped_lists(language: str) -> list[TermList]:
    """Our curated lists for ``language`` (``lists/<lang>/*.txt``); their allow-terms ride on a
    list named ``base.<lang>.allow``."""
    lists: list[TermList] = []
    allow: list[str] = []
    for path in sorted((LISTS_DIR / language).glob("*.txt")):
        parsed = parse_list_file(path)
        if parsed.exclude:
            raise ListFileError(f"{path}: [exclude] belongs only in glin-*.txt")
        allow.extend(parsed.allow)
        for (category, severity), entries in sorted(parsed.terms.items()):
            name = _list_name("base", language, category, severity) + f".{path.stem}"
            lists.append(TermList(name, category, tuple(entries), (), severity))
    if allow:
        lists.append(TermList(f"base.{language}.allow", "custom", (), tuple(allow)))
    return lists


@cache
def base_lists() -> tuple[TermList, ...]:
    """Every base list, all languages: glin-profanity's (mapped) and ours."""
    lists: list[TermList] = []
    for language in LANGUAGES:
        glin, _ = glin_lists(language)
        lists.extend(glin)
        lists.extend(shipped_lists(language))
    return tuple(lists)
