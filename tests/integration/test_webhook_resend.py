"""Dead webhook deliveries are listed and can be re-sent through the API."""

from __future__ import annotations

from sqlalchemy import update

from services.api.app import create_app
from services.postprocess.results import record_outcome
from shared.api_keys import create_api_key
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import DeliveryStatus, WebhookDelivery
from tests.integration.factories import completed_outcome, make_job


def test_a_dead_delivery_is_resent_with_a_fresh_schedule(backend_settings: Settings) -> None:
    url = backend_settings.database_url
    key = create_api_key(url, "shop")
    other = create_api_key(url, "school")
    job = make_job(url, key.id, webhook_url="https://example.com/hook")
    (delivery_id,) = record_outcome(backend_settings, completed_outcome(job.id))
    with session_scope(url) as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(status=DeliveryStatus.DEAD, attempt_count=8, last_status_code=500)
        )
    client = create_app(backend_settings).test_client()
    headers = {"Authorization": f"Bearer {key.key}"}

    listed = client.get(f"/v1/jobs/{job.id}/webhooks", headers=headers).get_json()["data"]
    assert [(d["id"], d["status"], d["last_status_code"]) for d in listed] == [
        (delivery_id, "dead", 500)
    ]
    resent = client.post(f"/v1/jobs/{job.id}/webhooks/resend", headers=headers)
    assert resent.status_code == 202
    assert resent.get_json()["data"][0]["status"] == "pending"
    with session_scope(url) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.attempt_count == 0  # the whole schedule again
    assert delivery.next_attempt_at is not None  # due now: the sweeper starts it

    nothing_dead = client.post(f"/v1/jobs/{job.id}/webhooks/resend", headers=headers)
    assert nothing_dead.status_code == 409
    someone_else = client.get(
        f"/v1/jobs/{job.id}/webhooks", headers={"Authorization": f"Bearer {other.key}"}
    )
    assert someone_else.status_code == 404
