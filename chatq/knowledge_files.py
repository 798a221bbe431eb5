"""Knowledge from files: what ``chatq kb ingest``, ``chatq intents load``, the demo and
``chatq eval`` read.

- ``.md`` / ``.txt`` → one document each: id = the file stem, title = the first heading, Markdown
  or plain text as the chunker reads it (or the stem), language detected unless ``lang`` is given.
- ``.json`` / ``.yaml`` / ``.yml`` / ``.csv`` → FAQ entries: a list of
  ``{id?, question, answer, alternatives?, lang?}`` (CSV: those columns, alternatives separated
  by ``|``); an entry without an id gets one from its question, so re-ingesting replaces it.
- A folder → every such file in it, recursively, in name order.
- A bundle folder (``examples/shop``) holds ``tenant.yaml``, ``documents/``, ``faq.yaml`` and
  ``intents.yaml``; ``load_bundle`` loads all of it into a tenant.

Every file is parsed and validated before anything is written, so a bad file stores nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.db.engine import session_scope
from shared.knowledge import store
from shared.knowledge.chunking import first_heading
from shared.knowledge.schemas import (
    DocumentIn,
    FaqIn,
    IntentDefinition,
    IntentIn,
    TenantSettings,
    is_valid_external_id,
)

DOCUMENT_SUFFIXES = {".md", ".markdown", ".txt"}
FAQ_SUFFIXES = {".json", ".yaml", ".yml", ".csv"}


class KnowledgeFileError(ValueError):
    """A file that cannot be ingested; the message names the file and what is wrong."""


@dataclass
class KnowledgeSet:
    documents: dict[str, DocumentIn] = field(default_factory=dict)
    faq: dict[str, FaqIn] = field(default_factory=dict)


def _errors(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or '(entry)'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KnowledgeFileError(f"{path}: not UTF-8 text") from None


def _load_structured(path: Path) -> Any:
    text = _read_text(path)
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise KnowledgeFileError(f"{path}: not valid JSON: {error}") from None
    except yaml.YAMLError as error:
        raise KnowledgeFileError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's message in one line: what is wrong and where."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def document_from_file(path: Path, lang: str | None = None) -> tuple[str, DocumentIn]:
    external_id = path.stem
    if not is_valid_external_id(external_id):
        raise KnowledgeFileError(
            f"{path}: the file name must make a valid id ([A-Za-z0-9._-], 1-128 characters)"
        )
    text = _read_text(path)
    title = first_heading(text) or path.stem
    try:
        return external_id, DocumentIn(title=title[:500], text=text, lang=lang)
    except ValidationError as error:
        raise KnowledgeFileError(f"{path}: {_errors(error)}") from None


def _faq_rows(path: Path) -> list[Mapping[str, Any]]:
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(_read_text(path)))
        missing = {"question", "answer"} - set(reader.fieldnames or ())
        if missing:
            raise KnowledgeFileError(f"{path}: CSV needs the columns {sorted(missing)}")
        rows: list[Mapping[str, Any]] = []
        for row in reader:
            alternatives = [a.strip() for a in (row.get("alternatives") or "").split("|")]
            rows.append(
                {
                    **{k: v for k, v in row.items() if k and v not in (None, "")},
                    "alternatives": [a for a in alternatives if a],
                }
            )
        return rows
    data = _load_structured(path)
    if isinstance(data, dict) and isinstance(data.get("faq"), list):
        data = data["faq"]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise KnowledgeFileError(f"{path}: expected a list of FAQ entries (question, answer)")
    return data


def faq_from_file(path: Path) -> dict[str, FaqIn]:
    entries: dict[str, FaqIn] = {}
    for number, row in enumerate(_faq_rows(path), start=1):
        fields = dict(row)
        external_id = str(fields.pop("id", "") or "")
        if not external_id:
            digest = hashlib.sha1(str(fields.get("question", "")).encode()).hexdigest()[:12]
            external_id = f"faq-{digest}"
        if not is_valid_external_id(external_id):
            raise KnowledgeFileError(f"{path}: entry {number}: invalid id {external_id!r}")
        try:
            entries[external_id] = FaqIn.model_validate(fields)
        except ValidationError as error:
            raise KnowledgeFileError(f"{path}: entry {number}: {_errors(error)}") from None
    if not entries:
        raise KnowledgeFileError(f"{path}: holds no FAQ entries")
    return entries


def _expand(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and p.suffix.lower() in DOCUMENT_SUFFIXES | FAQ_SUFFIXES
                )
            )
        elif path.is_file():
            files.append(path)
        else:
            raise KnowledgeFileError(f"{path}: no such file or folder")
    return files


def read_knowledge(paths: Iterable[Path], lang: str | None = None) -> KnowledgeSet:
    """Parse and validate every file first: a bad one raises before anything is stored."""
    knowledge = KnowledgeSet()
    for path in _expand(paths):
        suffix = path.suffix.lower()
        if suffix in DOCUMENT_SUFFIXES:
            external_id, document = document_from_file(path, lang)
            knowledge.documents[external_id] = document
        elif suffix in FAQ_SUFFIXES:
            knowledge.faq.update(faq_from_file(path))
        else:
            raise KnowledgeFileError(
                f"{path}: unknown kind of file (documents: .md .txt; FAQ: .json .yaml .csv)"
            )
    return knowledge


def read_intents(path: Path) -> list[IntentDefinition]:
    data = _load_structured(path)
    if isinstance(data, dict) and isinstance(data.get("intents"), list):
        data = data["intents"]
    if not isinstance(data, list):
        raise KnowledgeFileError(f"{path}: expected a list of intents")
    intents = []
    for number, item in enumerate(data, start=1):
        try:
            intents.append(IntentDefinition.model_validate(item))
        except ValidationError as error:
            raise KnowledgeFileError(f"{path}: intent {number}: {_errors(error)}") from None
    return intents


def read_tenant_settings(path: Path) -> TenantSettings:
    data = _load_structured(path)
    if isinstance(data, dict) and "settings" in data:
        data = data["settings"]
    try:
        return TenantSettings.model_validate(data or {})
    except ValidationError as error:
        raise KnowledgeFileError(f"{path}: {_errors(error)}") from None


@dataclass(frozen=True)
class IngestReport:
    documents: int
    chunks: int
    faq: int
    intents: int = 0


def store_knowledge(database_url: str, tenant: str, knowledge: KnowledgeSet) -> IngestReport:
    chunks = 0
    with session_scope(database_url) as session:
        tenant_id = store.tenant_by_name(session, tenant).id
        for external_id, document in knowledge.documents.items():
            chunks += store.put_document(session, tenant_id, external_id, document).chunks
        for external_id, entry in knowledge.faq.items():
            store.put_faq(session, tenant_id, external_id, entry)
    return IngestReport(len(knowledge.documents), chunks, len(knowledge.faq))


def store_intents(
    database_url: str,
    tenant: str,
    intents: Iterable[IntentDefinition],
    variables: Mapping[str, str] | None = None,
) -> int:
    """Store intents; ``variables`` fill ``{name}`` placeholders in handler URLs (the demo's
    order service address, say) before they are stored."""
    count = 0
    with session_scope(database_url) as session:
        tenant_id = store.tenant_by_name(session, tenant).id
        for intent in intents:
            definition = IntentIn.model_validate(intent.model_dump(exclude={"name"}))
            handler = definition.handler
            if variables and handler.type == "http":
                url = handler.url
                for name, value in variables.items():
                    url = url.replace("{" + name + "}", value)
                definition = definition.model_copy(
                    update={"handler": handler.model_copy(update={"url": url})}
                )
            store.put_intent(session, tenant_id, intent.name, definition)
            count += 1
    return count


def load_bundle(
    database_url: str,
    tenant: str,
    folder: Path,
    variables: Mapping[str, str] | None = None,
) -> IngestReport:
    """Load an example business (``tenant.yaml``, ``documents/``, ``faq.yaml``,
    ``intents.yaml``) into ``tenant``, which must exist."""
    if not folder.is_dir():
        raise KnowledgeFileError(f"{folder}: not a folder")
    settings_file = folder / "tenant.yaml"
    sources = [p for p in (folder / "documents", folder / "faq.yaml") if p.exists()]
    knowledge = read_knowledge(sources)
    intents_file = folder / "intents.yaml"
    intents = read_intents(intents_file) if intents_file.is_file() else []
    settings = read_tenant_settings(settings_file) if settings_file.is_file() else None
    report = store_knowledge(database_url, tenant, knowledge)
    count = store_intents(database_url, tenant, intents, variables)
    if settings is not None:
        with session_scope(database_url) as session:
            store.put_settings(session, store.tenant_by_name(session, tenant).id, settings)
    return IngestReport(report.documents, report.chunks, report.faq, count)
