"""Request and response bodies of the feedback endpoints.

A rating is a thumb (``-1``/``+1``) or stars (``1``–``5``). The two scales share the value 1,
which means opposite things (a thumb up, the worst of five stars), so ``scale`` says which is
meant; without it, ``-1`` and ``1`` are thumbs and ``2``–``5`` are stars.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.db.models import Feedback

MAX_COMMENT_CHARS = 4_000
MAX_CORRECTED_ANSWER_CHARS = 20_000


class RatingScale(StrEnum):
    THUMBS = "thumbs"
    STARS = "stars"


RATINGS = {RatingScale.THUMBS: (-1, 1), RatingScale.STARS: (1, 2, 3, 4, 5)}


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rating: int
    """``-1``/``+1`` (thumbs) or ``1``–``5`` (stars)."""
    scale: RatingScale | None = None
    """Which scale ``rating`` is on; default: thumbs for -1 and 1, stars for 2–5."""
    comment: str | None = Field(None, min_length=1, max_length=MAX_COMMENT_CHARS)
    corrected_answer: str | None = Field(None, min_length=1, max_length=MAX_CORRECTED_ANSWER_CHARS)
    """The answer that should have been given (exported for fine-tuning)."""

    @model_validator(mode="after")
    def _rating_on_its_scale(self) -> FeedbackCreate:
        if self.scale is None:
            self.scale = RatingScale.THUMBS if self.rating in (-1, 1) else RatingScale.STARS
        if self.rating not in RATINGS[self.scale]:
            allowed = ", ".join(str(value) for value in RATINGS[self.scale])
            raise ValueError(f"a rating on the {self.scale.value} scale is one of {allowed}")
        if self.corrected_answer is not None and not self.corrected_answer.strip():
            raise ValueError("corrected_answer is text, not blank")
        return self


class FeedbackView(BaseModel):
    object: str = "chat.job.feedback"
    job_id: uuid.UUID
    rating: int
    scale: RatingScale
    comment: str | None
    corrected_answer: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Feedback) -> FeedbackView:
        return cls(
            job_id=row.job_id,
            rating=row.rating,
            scale=RatingScale(row.scale),
            comment=row.comment,
            corrected_answer=row.corrected_answer,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
