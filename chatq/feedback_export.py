"""Feedback as training data: preference pairs for DPO and chats for SFT, in the conversational
formats TRL's ``DPOTrainer`` and ``SFTTrainer`` read.

- SFT: every corrected answer, and every answer rated good (thumb up, 4–5 stars), as a chat that
  ends with it. The rows carry ``lang`` and ``origin`` too, so ``chatq train finetune`` reads them
  as they are.
- DPO: a corrected answer is *chosen* over the answer the job gave; and, for the same question
  asked of the same tenant, an answer rated good is *chosen* over one rated bad.

Everything leaves anonymised with the product's own anonymiser and the session's placeholders
(the transcript's ``<PHONE_1>`` stays ``<PHONE_1>`` here), whatever the retention purge has or
has not reached yet.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import ChatSession, Feedback, Job, JobStatus, Message, Tenant
from shared.knowledge.text import detect_language
from shared.pii import PlaceholderMap
from shared.tenant_safety import TenantSafetyCache

# How many earlier turns of the conversation a prompt keeps (the worker's budget cuts further)
MAX_PRIOR_TURNS = 10

ChatMessage = dict[str, str]


class ExportFormat(StrEnum):
    DPO = "dpo"
    SFT = "sft"


class Judgement(StrEnum):
    GOOD = "good"
    BAD = "bad"
    NEUTRAL = "neutral"


def judgement(rating: int, scale: str) -> Judgement:
    if scale == "thumbs":
        return Judgement.GOOD if rating > 0 else Judgement.BAD
    if rating >= 4:
        return Judgement.GOOD
    return Judgement.BAD if rating <= 2 else Judgement.NEUTRAL


@dataclass(frozen=True)
class JudgedAnswer:
    """One job's conversation and answer, anonymised, with what its feedback said."""

    tenant: str
    prompt: list[ChatMessage]
    answer: str
    corrected: str | None
    judgement: Judgement

    @property
    def question_key(self) -> tuple[str, str]:
        """Same tenant, same conversation: answers to it can be compared."""
        return self.tenant, json.dumps(self.prompt, ensure_ascii=False, sort_keys=True)


@dataclass
class ExportReport:
    format: ExportFormat
    feedback_read: int = 0
    rows_written: int = 0
    by_origin: dict[str, int] = field(default_factory=dict)

    def count(self, origin: str) -> None:
        self.rows_written += 1
        self.by_origin[origin] = self.by_origin.get(origin, 0) + 1


def _prior_turns(session: Session, job: Job) -> list[ChatMessage]:
    if job.history:
        turns = [{"role": t["role"], "content": t["content"]} for t in job.history]
    elif job.session_id is not None:
        rows = session.scalars(
            select(Message)
            .where(Message.session_id == job.session_id, Message.created_at < job.created_at)
            .order_by(Message.created_at.desc(), Message.position.desc())
            .limit(MAX_PRIOR_TURNS)
        ).all()
        turns = [{"role": row.role, "content": row.content} for row in reversed(rows)]
    else:
        turns = []
    turns = [turn for turn in turns if turn["role"] in ("user", "assistant")]
    return turns[-MAX_PRIOR_TURNS:]


def read_judged_answers(
    settings: Settings,
    secret: bytes,
    *,
    tenants: Sequence[str] = (),
    since: datetime | None = None,
) -> Iterator[JudgedAnswer]:
    """Every feedback on a completed job that still has its texts, oldest first."""
    safety = TenantSafetyCache()
    maps: dict[uuid.UUID, PlaceholderMap] = {}
    with session_scope(settings.database_url) as session:
        query = (
            select(Feedback, Job, Tenant)
            .join(Job, Job.id == Feedback.job_id)
            .join(Tenant, Tenant.id == Feedback.tenant_id)
            .where(Job.status == JobStatus.COMPLETED, Job.response.is_not(None))
            .order_by(Feedback.created_at, Feedback.id)
        )
        if tenants:
            query = query.where(Tenant.name.in_(list(tenants)))
        if since is not None:
            query = query.where(Feedback.updated_at >= since)
        for feedback, job, tenant in session.execute(query).all():
            anonymizer = safety.get(session, tenant).anonymizer
            # one map per session for the whole export, so a placeholder means one value in
            # every row of a conversation (exporting never writes it back to the session)
            key = job.session_id or job.id
            placeholders = maps.get(key)
            if placeholders is None:
                chat_session = session.get(ChatSession, job.session_id) if job.session_id else None
                placeholders = maps[key] = PlaceholderMap(
                    secret, chat_session.pii_placeholders if chat_session is not None else None
                )

            def clean(text: str) -> str:
                return anonymizer.anonymize(text, placeholders)  # noqa: B023

            prompt = [
                {"role": turn["role"], "content": clean(turn["content"])}
                for turn in _prior_turns(session, job)
            ]
            prompt.append({"role": "user", "content": clean(job.query)})
            assert job.response is not None
            yield JudgedAnswer(
                tenant=tenant.name,
                prompt=prompt,
                answer=clean(job.response),
                corrected=clean(feedback.corrected_answer) if feedback.corrected_answer else None,
                judgement=judgement(feedback.rating, feedback.scale),
            )


def _assistant(text: str) -> list[ChatMessage]:
    return [{"role": "assistant", "content": text}]


def sft_rows(answers: Sequence[JudgedAnswer]) -> Iterator[tuple[str, dict[str, Any]]]:
    for answer in answers:
        if answer.corrected is not None:
            target, origin = answer.corrected, "feedback:corrected"
        elif answer.judgement is Judgement.GOOD:
            target, origin = answer.answer, "feedback:rated-good"
        else:
            continue
        yield (
            origin,
            {
                "messages": [*answer.prompt, *_assistant(target)],
                "lang": detect_language(answer.prompt[-1]["content"] + target),
                "origin": origin,
            },
        )


def dpo_rows(answers: Sequence[JudgedAnswer]) -> Iterator[tuple[str, dict[str, Any]]]:
    by_question: dict[tuple[str, str], list[JudgedAnswer]] = defaultdict(list)
    for answer in answers:
        if answer.corrected is not None and answer.corrected.strip() != answer.answer.strip():
            yield "feedback:corrected", _pair(answer.prompt, answer.corrected, answer.answer)
        by_question[answer.question_key].append(answer)
    for judged in by_question.values():
        good = list(dict.fromkeys(a.answer for a in judged if a.judgement is Judgement.GOOD))
        bad = list(dict.fromkeys(a.answer for a in judged if a.judgement is Judgement.BAD))
        for chosen in good:
            for rejected in bad:
                if chosen != rejected:
                    yield "feedback:rated", _pair(judged[0].prompt, chosen, rejected)


def _pair(prompt: list[ChatMessage], chosen: str, rejected: str) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": _assistant(chosen), "rejected": _assistant(rejected)}


def export_feedback(
    settings: Settings,
    secret: bytes,
    out: Path,
    export_format: ExportFormat,
    *,
    tenants: Sequence[str] = (),
    since: datetime | None = None,
) -> ExportReport:
    """Write ``out`` (JSON lines, whole or not at all) and say what went into it."""
    answers = list(read_judged_answers(settings, secret, tenants=tenants, since=since))
    report = ExportReport(export_format, feedback_read=len(answers))
    rows = sft_rows(answers) if export_format is ExportFormat.SFT else dpo_rows(answers)
    out.parent.mkdir(parents=True, exist_ok=True)
    draft = out.with_name(out.name + ".partial")
    with draft.open("w", encoding="utf-8") as lines:
        for origin, row in rows:
            lines.write(json.dumps(row, ensure_ascii=False) + "\n")
            report.count(origin)
    draft.replace(out)
    return report
