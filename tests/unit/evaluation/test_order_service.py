"""The local order service over real HTTP: known orders, unknown ones, signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from chatq.order_service import OrderService

ORDERS = {
    "20261234": {"order_id": "20261234", "status": "shipped", "items_zh": "路由器"},
    "20261888": {"order_id": "20261888", "status": "processing"},
}
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_known_order_is_returned_as_json() -> None:
    with OrderService(ORDERS) as service:
        response = httpx.get(f"{service.url}/orders/20261234")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == ORDERS["20261234"]


def test_an_unknown_order_is_404_not_found() -> None:
    with OrderService(ORDERS) as service:
        unknown = httpx.get(f"{service.url}/orders/99999999")
        elsewhere = httpx.get(f"{service.url}/customers/1")

    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found"}
    assert elsewhere.status_code == 404


def test_requests_are_recorded_with_their_headers() -> None:
    with OrderService(ORDERS) as service:
        httpx.get(f"{service.url}/orders/20261888", headers={"X-Trace": "t-1"})

    (request,) = service.requests
    assert request.method == "GET"
    assert request.path == "/orders/20261888"
    assert request.headers["x-trace"] == "t-1"
    assert request.verified is None


def test_orders_load_from_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(ORDERS, ensure_ascii=False), encoding="utf-8")

    with OrderService.from_file(path) as service:
        response = httpx.get(f"{service.url}/orders/20261234")

    assert response.json()["items_zh"] == "路由器"


def test_a_file_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text("[1, 2]")

    with pytest.raises(ValueError, match="expected a JSON object"):
        OrderService.from_file(path)


def test_with_a_secret_only_signed_requests_are_answered() -> None:
    now = datetime.now(UTC)
    signature = Webhook(SECRET).sign("msg_1", now, "")
    signed = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }

    with OrderService(ORDERS, secret=SECRET) as service:
        good = httpx.get(f"{service.url}/orders/20261234", headers=signed)
        unsigned = httpx.get(f"{service.url}/orders/20261234")

    assert good.status_code == 200
    assert unsigned.status_code == 401
    assert [r.verified for r in service.requests] == [True, False]
