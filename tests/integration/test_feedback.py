"""Feedback on answers against a real database (embedded SQLite, and Postgres): given, replaced,
read, refused where it makes no sense, tenant-isolated, erased with its session; and exported as
DPO pairs and SFT chats that TRL's trainers take as they are, anonymised."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from chatq.feedback_export import ExportFormat, export_feedback
from services.api.app import create_app
from shared.api_keys import IssuedKey, create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import Feedback, JobStatus
from tests.integration.factories import make_job

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
SECRET = b"feedback-test-secret"


def bearer(key: IssuedKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.key}"}


def completed_job(settings: Settings, key: IssuedKey, query: str, response: str, **kw: Any) -> str:
    job = make_job(
        settings.database_url, key.id, status=JobStatus.COMPLETED, query=query,
        response=response, route="llm", **kw,
    )  # fmt: skip
    return str(job.id)


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["type"] == f"urn:chatq:problem:{slug}"
    return body


def test_feedback_is_given_replaced_and_read_back(backend_settings: Settings) -> None:
    client = create_app(backend_settings).test_client()
    key = create_api_key(backend_settings.database_url, "shop")
    job_id = completed_job(backend_settings, key, "Can I return a kettle?", "No.")
    first = client.post(
        f"/v1/jobs/{job_id}/feedback", json={"rating": -1, "comment": "wrong"},
        headers=bearer(key),
    )  # fmt: skip
    assert first.status_code == 201, first.get_data(as_text=True)
    assert first.get_json()["scale"] == "thumbs"
    again = client.post(
        f"/v1/jobs/{job_id}/feedback",
        json={"rating": 1, "scale": "stars", "corrected_answer": "Yes, within 7 days."},
        headers=bearer(key),
    )
    assert again.status_code == 200
    read = client.get(f"/v1/jobs/{job_id}/feedback", headers=bearer(key)).get_json()
    assert (read["rating"], read["scale"], read["comment"]) == (1, "stars", None)
    assert read["corrected_answer"] == "Yes, within 7 days."
    with session_scope(backend_settings.database_url) as session:
        assert session.query(Feedback).count() == 1
    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(key)).get_json()
    assert job["links"]["feedback"] == f"/v1/jobs/{job_id}/feedback"


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 0},
        {"rating": 6},
        {"rating": -1, "scale": "stars"},
        {"rating": 3, "scale": "thumbs"},
        {"rating": "5"},
        {"rating": 1, "corrected_answer": "   "},
        {"rating": 1, "comment": "x" * 4001},
        {"rating": 1, "mood": "happy"},
        {},
    ],
)
def test_bad_feedback_is_refused_and_nothing_is_stored(
    backend_settings: Settings, body: dict[str, Any]
) -> None:
    client = create_app(backend_settings).test_client()
    key = create_api_key(backend_settings.database_url, "shop")
    job_id = completed_job(backend_settings, key, "Hi", "Hello")
    response = client.post(f"/v1/jobs/{job_id}/feedback", json=body, headers=bearer(key))
    assert_problem(response, 422, "validation-error")
    with session_scope(backend_settings.database_url) as session:
        assert session.query(Feedback).count() == 0


def test_feedback_needs_a_completed_job_of_the_callers_tenant(backend_settings: Settings) -> None:
    client = create_app(backend_settings).test_client()
    shop = create_api_key(backend_settings.database_url, "shop")
    other = create_api_key(backend_settings.database_url, "school")
    done = completed_job(backend_settings, shop, "Hi", "Hello")
    queued = str(make_job(backend_settings.database_url, shop.id).id)
    body = {"rating": 1}
    assert_problem(
        client.post(f"/v1/jobs/{done}/feedback", json=body, headers=bearer(other)), 404,
        "not-found",
    )  # fmt: skip
    assert_problem(client.get(f"/v1/jobs/{done}/feedback", headers=bearer(other)), 404, "not-found")
    problem = assert_problem(
        client.post(f"/v1/jobs/{queued}/feedback", json=body, headers=bearer(shop)), 409,
        "job-not-completed",
    )  # fmt: skip
    assert problem["job_status"] == "queued"
    assert_problem(
        client.post(f"/v1/jobs/{uuid.uuid4()}/feedback", json=body, headers=bearer(shop)), 404,
        "not-found",
    )  # fmt: skip
    reader = create_api_key(
        backend_settings.database_url, "reader", tenant="shop", scopes=["jobs:read"]
    )
    assert_problem(
        client.post(f"/v1/jobs/{done}/feedback", json=body, headers=bearer(reader)), 403,
        "insufficient-scope",
    )  # fmt: skip
    assert_problem(client.get(f"/v1/jobs/{done}/feedback", headers=bearer(shop)), 404, "not-found")


def test_erasing_a_session_deletes_its_feedback(backend_settings: Settings) -> None:
    client = create_app(backend_settings).test_client()
    key = create_api_key(backend_settings.database_url, "shop")
    job_id = completed_job(
        backend_settings, key, "Call me on 13812345678", "Sure.", session_external_id="c-1"
    )
    assert client.post(
        f"/v1/jobs/{job_id}/feedback", json={"rating": 5}, headers=bearer(key)
    ).status_code == 201  # fmt: skip
    assert client.delete("/v1/sessions/c-1", headers=bearer(key)).status_code == 204
    with session_scope(backend_settings.database_url) as session:
        assert session.query(Feedback).count() == 0
    assert_problem(
        client.post(f"/v1/jobs/{job_id}/feedback", json={"rating": 5}, headers=bearer(key)),
        409, "job-erased",
    )  # fmt: skip


def rate(client: Any, key: IssuedKey, job_id: str, **body: Any) -> None:
    response = client.post(f"/v1/jobs/{job_id}/feedback", json=body, headers=bearer(key))
    assert response.status_code == 201, response.get_data(as_text=True)


def test_feedback_exports_as_dpo_pairs_and_sft_chats_anonymised(
    backend_settings: Settings, tmp_path: Path
) -> None:
    client = create_app(backend_settings).test_client()
    shop = create_api_key(backend_settings.database_url, "shop")
    school = create_api_key(backend_settings.database_url, "school")
    question = "Can I return the kettle? My phone is 13812345678"
    corrected = completed_job(backend_settings, shop, question, "No returns.")
    good = completed_job(backend_settings, shop, "运费多少？", "满99元包邮。")
    bad = completed_job(backend_settings, shop, "运费多少？", "运费是100元。")
    neutral = completed_job(backend_settings, shop, "Hi", "Hello")
    elsewhere = completed_job(backend_settings, school, "When is the exam?", "Monday.")
    rate(client, shop, corrected, rating=-1, corrected_answer="Yes, call 13812345678 first.")
    rate(client, shop, good, rating=5)
    rate(client, shop, bad, rating=1, scale="stars")
    rate(client, shop, neutral, rating=3)
    rate(client, school, elsewhere, rating=1)

    dpo_file, sft_file = tmp_path / "dpo.jsonl", tmp_path / "sft.jsonl"
    dpo = export_feedback(backend_settings, SECRET, dpo_file, ExportFormat.DPO, tenants=["shop"])
    assert (dpo.feedback_read, dpo.rows_written) == (4, 2)
    pairs = [json.loads(line) for line in dpo_file.read_text().splitlines()]
    by_answer = {pair["chosen"][0]["content"]: pair for pair in pairs}
    assert by_answer["满99元包邮。"]["rejected"] == [
        {"role": "assistant", "content": "运费是100元。"}
    ]
    fix = next(pair for pair in pairs if pair["rejected"][0]["content"] == "No returns.")
    # the phone number is a placeholder, the same in the question and the correction
    prompt, chosen = fix["prompt"][0]["content"], fix["chosen"][0]["content"]
    assert "13812345678" not in prompt + chosen
    placeholder = prompt.rsplit(" ", 1)[-1]
    assert placeholder.startswith("<PHONE") and placeholder in chosen

    sft = export_feedback(backend_settings, SECRET, sft_file, ExportFormat.SFT)
    rows = [json.loads(line) for line in sft_file.read_text().splitlines()]
    assert sft.rows_written == len(rows) == 3  # the correction, and the two answers rated good
    assert {row["origin"] for row in rows} == {"feedback:corrected", "feedback:rated-good"}
    assert {row["messages"][-1]["content"] for row in rows} >= {"满99元包邮。", "Monday."}
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)


def test_trl_trains_on_the_exported_files(
    backend_settings: Settings, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """One DPO step and one SFT step of TRL's own trainers on the exported files."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    client = create_app(backend_settings).test_client()
    key = create_api_key(backend_settings.database_url, "shop")
    for number in range(2):
        good = completed_job(backend_settings, key, f"refund {number}?", "Within 7 days.")
        bad = completed_job(backend_settings, key, f"refund {number}?", "Never.")
        rate(client, key, good, rating=1)
        rate(client, key, bad, rating=-1, corrected_answer="Within seven days of delivery.")
    export_feedback(backend_settings, SECRET, tmp_path / "dpo.jsonl", ExportFormat.DPO)
    export_feedback(backend_settings, SECRET, tmp_path / "sft.jsonl", ExportFormat.SFT)

    source = tiny_model_dir / "pytorch"
    tokenizer = AutoTokenizer.from_pretrained(source)
    common = {"max_steps": 1, "per_device_train_batch_size": 2, "report_to": [], "use_cpu": True}
    torch.manual_seed(0)
    dpo = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(source),
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
        train_dataset=load_dataset("json", data_files=str(tmp_path / "dpo.jsonl"))["train"],
        processing_class=tokenizer,
    )
    assert dpo.train().training_loss > 0
    sft = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(source),
        args=SFTConfig(output_dir=str(tmp_path / "sft"), **common),
        train_dataset=load_dataset("json", data_files=str(tmp_path / "sft.jsonl"))["train"],
        processing_class=tokenizer,
    )
    assert sft.train().training_loss > 0


def test_feedback_on_a_job_the_purge_passed_is_stored_anonymised(
    backend_settings: Settings,
) -> None:
    from datetime import timedelta

    from services.postprocess.purge import purge_once
    from shared.db.models import utcnow

    settings = backend_settings.model_copy(update={"result_retention_s": 60})
    client = create_app(settings).test_client()
    key = create_api_key(settings.database_url, "shop")
    job_id = completed_job(
        settings, key, "My number is 13812345678", "Thanks.",
        session_external_id="c-9", completed_at=utcnow() - timedelta(hours=1),
    )  # fmt: skip
    assert purge_once(settings).anonymised_jobs == 1
    response = client.post(
        f"/v1/jobs/{job_id}/feedback",
        json={"rating": -1, "comment": "call 13812345678", "corrected_answer": "Noted."},
        headers=bearer(key),
    )
    assert response.status_code == 201
    stored = client.get(f"/v1/jobs/{job_id}/feedback", headers=bearer(key)).get_json()
    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(key)).get_json()
    assert "13812345678" not in stored["comment"]
    # the same placeholder as the purge gave the job's own question
    assert stored["comment"].removeprefix("call ") == job["query"].rsplit(" ", 1)[-1]
