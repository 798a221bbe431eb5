"""Reading training data in the formats ``chatq train`` accepts, into ``ChatExample`` rows.

- JSON lines (``.jsonl``, ``.ndjson``, or ``.json`` holding lines or one array), each row in
  one of these shapes:

  - seed: ``{"input": "用户：如何重置路由器？", "output": "客服：请按住…"}`` (speaker prefixes
    such as 用户：/客服：/User:/Agent: are removed; ``instruction`` + ``input`` + ``output``,
    the Alpaca shape, is read as one question);
  - chat: ``{"messages": [{"role": "user", "content": "…"}, …]}``, ending with the answer;

  both with optional ``lang`` ("en" or "zh"), ``facts`` (a list, or one string with ``|``
  between facts) and ``origin``.
- CSV (``.csv``, UTF-8, a header row) with ``question`` and ``answer`` columns and optional
  ``lang`` and ``facts`` (``|`` between facts).
- A knowledge-base FAQ file (``.yaml``/``.yml``, as ``chatq kb ingest`` reads it: entries with
  ``question``, ``answer``, ``alternatives``, ``lang``): one example per wording, the question
  and each alternative with the entry's answer. A business trains on the FAQ it already has.

The language is detected from the text (the share of Chinese characters) when a row does not
give it. A malformed row does not stop the reading: it comes back in ``ReadResult.rejected``
with its line and why, for ``clean`` to report. A file that cannot be read at all, or is in no
format above, raises ValueError (FileNotFoundError when it is missing).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.knowledge.text import detect_language
from training.data.examples import ChatExample

RAW_PREVIEW_CHARS = 300
"""A rejected row keeps this much of its text: enough to find it, not a copy of the file."""

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)
FAQ_SUFFIXES = (".yaml", ".yml")
FACT_SEPARATOR = "|"

# A speaker label at the start of a turn, in the seed and CSV shapes where the field already
# says who speaks; full-width (：) and ASCII (:) colons alike.
_SPEAKER_PREFIX = re.compile(
    r"^\s*(?:用户|顾客|客户|买家|客服|助手|机器人|"
    r"user|customer|client|agent|assistant|support|human|bot)\s*[:：]\s*",
    re.IGNORECASE,
)


class Rejected(BaseModel):
    """A row that could not become an example."""

    model_config = ConfigDict(frozen=True)

    line: int
    """1-based line of the file (the item number in a JSON array; in a CSV, the line the row
    ends on)."""
    reason: str
    raw: str


class ReadResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    examples: list[ChatExample]
    lines: list[int]
    """The line each example was read from, position by position."""
    rejected: list[Rejected]

    @property
    def rows_read(self) -> int:
        return len(self.examples) + len(self.rejected)


class RowError(ValueError):
    """Why one row is not an example (the row is rejected, the reading goes on)."""


def strip_speaker(text: str) -> str:
    """``text`` without a leading speaker label ("用户：", "Agent:"), and trimmed."""
    return _SPEAKER_PREFIX.sub("", text, count=1).strip()


def read_source(path: Path) -> ReadResult:
    """The examples of one file, and the rows that are not examples."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix in FAQ_SUFFIXES:
        return _faq_examples(path)
    if suffix not in JSON_SUFFIXES + CSV_SUFFIXES:
        raise ValueError(
            f"{path}: unknown format {suffix or '(no suffix)'}; use JSON lines "
            f"({', '.join(JSON_SUFFIXES)}), CSV (.csv) with question,answer columns or a "
            "knowledge-base FAQ file (.yaml)"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read: {error.strerror}") from None
    rows = _csv_rows(path, text) if suffix in CSV_SUFFIXES else _json_rows(path, text)

    examples: list[ChatExample] = []
    lines: list[int] = []
    rejected: list[Rejected] = []
    for line, row in rows:
        if isinstance(row, Rejected):
            rejected.append(row)
            continue
        try:
            examples.append(example_from_row(row))
            lines.append(line)
        except RowError as error:
            rejected.append(Rejected(line=line, reason=str(error), raw=_preview(row)))
    return ReadResult(examples=examples, lines=lines, rejected=rejected)


def _faq_examples(path: Path) -> ReadResult:
    """Every wording of every FAQ entry, read by the knowledge base's own reader (an entry it
    refuses makes the whole file refused, as ``chatq kb ingest`` would)."""
    from chatq.knowledge_files import KnowledgeFileError, faq_from_file

    try:
        entries = faq_from_file(path)
    except KnowledgeFileError as error:
        raise ValueError(str(error)) from None
    examples: list[ChatExample] = []
    lines: list[int] = []
    rejected: list[Rejected] = []
    for number, (external_id, entry) in enumerate(entries.items(), start=1):
        for question in (entry.question, *entry.alternatives):
            row = {"question": question, "answer": entry.answer, "lang": entry.lang}
            try:
                examples.append(example_from_row({**row, "origin": f"faq:{external_id}"}))
                lines.append(number)  # the entry's place in the file
            except RowError as error:
                rejected.append(Rejected(line=number, reason=str(error), raw=_preview(row)))
    return ReadResult(examples=examples, lines=lines, rejected=rejected)


def example_from_row(row: Mapping[str, Any]) -> ChatExample:
    """One row of any accepted shape (a JSON object or a CSV row) as an example."""
    if "messages" in row:
        messages = _chat_messages(row["messages"])
    elif "output" in row and ("input" in row or "instruction" in row):
        messages = _seed_messages(row)
    elif "answer" in row and "question" in row:
        messages = [
            {"role": "user", "content": strip_speaker(_text(row, "question"))},
            {"role": "assistant", "content": strip_speaker(_text(row, "answer"))},
        ]
    else:
        raise RowError(
            "unknown shape: expected messages, input/output or question/answer; "
            f"found keys {', '.join(sorted(map(str, row))) or 'none'}"
        )
    fields: dict[str, Any] = {
        "messages": messages,
        "lang": _language(row.get("lang"), messages),
        "facts": _facts(row.get("facts")),
    }
    if row.get("origin"):
        fields["origin"] = row["origin"]
    try:
        return ChatExample.model_validate(fields)
    except ValidationError as error:
        raise RowError(_validation_summary(error)) from None


def _seed_messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    question = strip_speaker(_text(row, "input")) if row.get("input") is not None else ""
    if row.get("instruction"):
        # Alpaca: the instruction is the request, the input (often empty) what it is about
        instruction = strip_speaker(_text(row, "instruction"))
        question = f"{instruction}\n\n{question}" if question else instruction
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": strip_speaker(_text(row, "output"))},
    ]


def _chat_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list):
        raise RowError("messages must be a list of {role, content} objects")
    turns = []
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise RowError(f"message {number} needs a role and a text content")
        turns.append({"role": message.get("role"), "content": message["content"].strip()})
    return turns


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        raise RowError(f"{key} is missing")
    if not isinstance(value, str):
        raise RowError(f"{key} must be text, not {type(value).__name__}")
    return value


def _language(given: Any, messages: list[dict[str, str]]) -> str:
    if given is None or given == "":
        return detect_language(" ".join(str(message["content"]) for message in messages))
    if not isinstance(given, str):
        raise RowError(f"lang must be text, not {type(given).__name__}")
    # "zh-CN", "zh_Hans", "EN-us": the language is the first subtag
    language = re.split(r"[-_]", given.strip().lower(), maxsplit=1)[0]
    if language not in ("en", "zh"):
        raise RowError(f"lang {given!r} is not supported (en or zh)")
    return language


def _facts(given: Any) -> list[str]:
    if given is None:
        return []
    if isinstance(given, str):
        given = given.split(FACT_SEPARATOR)
    if not isinstance(given, list) or not all(isinstance(fact, str) for fact in given):
        raise RowError("facts must be a list of strings or one string with | between facts")
    return [fact.strip() for fact in given if fact.strip()]


def _validation_summary(error: ValidationError) -> str:
    parts = []
    for detail in error.errors()[:3]:
        where = ".".join(str(part) for part in detail["loc"])
        parts.append(f"{where}: {detail['msg']}" if where else detail["msg"])
    return "; ".join(parts)


def _preview(row: Any) -> str:
    text = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
    return text[:RAW_PREVIEW_CHARS]


def _json_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any] | Rejected]]:
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a JSON array: {error}") from None
        for number, item in enumerate(items, start=1):
            if isinstance(item, dict):
                yield number, item
            else:
                reason = f"not a JSON object but {type(item).__name__}"
                yield number, Rejected(line=number, reason=reason, raw=_preview(item))
        return

    parsed_any = False
    rows: list[tuple[int, Mapping[str, Any] | Rejected]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            reason = f"not JSON: {error.msg} at column {error.colno}"
            rows.append((number, Rejected(line=number, reason=reason, raw=_preview(line))))
            continue
        parsed_any = True
        if isinstance(item, dict):
            rows.append((number, item))
        else:
            reason = f"not a JSON object but {type(item).__name__}"
            rows.append((number, Rejected(line=number, reason=reason, raw=_preview(line))))
    if rows and not parsed_any:
        raise ValueError(f"{path}: no line is JSON; expected one JSON object per line")
    yield from rows


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any] | Rejected]]:
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "question" not in header or "answer" not in header:
        raise ValueError(
            f"{path}: a CSV needs a header row with question and answer columns "
            f"(optional: lang, facts); found: {', '.join(header) or 'nothing'}"
        )
    reader.fieldnames = header
    try:
        for row in reader:
            line = reader.line_num
            raw = {key: value for key, value in row.items() if key is not None}
            if None in row:
                yield line, _rejected_csv(line, "more values than columns", raw)
            elif row["question"] is None or row["answer"] is None:
                yield line, _rejected_csv(line, "fewer values than columns", raw)
            else:
                yield line, raw  # an empty lang or facts cell reads as absent
    except csv.Error as error:
        raise ValueError(f"{path}:{reader.line_num}: not CSV: {error}") from None


def _rejected_csv(line: int, reason: str, raw: Mapping[str, Any]) -> Rejected:
    return Rejected(line=line, reason=reason, raw=_preview(dict(raw)))
