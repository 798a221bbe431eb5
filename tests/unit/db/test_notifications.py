"""The job-finished notification's payload: the job id, and the rendered job where it fits."""

from __future__ import annotations

import uuid

from shared.db.notifications import MAX_PAYLOAD_BYTES, notification_payload, parse_notification


def test_the_rendered_job_rides_along_and_comes_back_whole() -> None:
    job_id = uuid.uuid4()
    rendered = '{"id": "x", "response": "退款 7 天 with spaces"}'
    payload = notification_payload(job_id, rendered)
    assert parse_notification(payload) == (job_id, rendered)


def test_a_job_too_large_for_a_notification_is_named_by_its_id_alone() -> None:
    job_id = uuid.uuid4()
    # counted in bytes: 3 per Chinese character
    rendered = "退" * (MAX_PAYLOAD_BYTES // 3)
    payload = notification_payload(job_id, rendered)
    assert payload == str(job_id)
    assert parse_notification(payload) == (job_id, None)
    fits = "退" * ((MAX_PAYLOAD_BYTES - 37) // 3)
    assert len(notification_payload(job_id, fits).encode()) <= MAX_PAYLOAD_BYTES
    assert parse_notification(notification_payload(job_id, fits)) == (job_id, fits)


def test_a_payload_that_names_no_job_is_ignored() -> None:
    assert parse_notification("hello there") is None
    assert parse_notification("") is None
    assert parse_notification(str(uuid.uuid4())) is not None
