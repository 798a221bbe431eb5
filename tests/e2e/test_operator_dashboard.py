"""The operator dashboard in a real headless browser (Debian's chromium, driven by Playwright)
against a running stack (embedded default, the tiny model): jobs answered by the FAQ, by the
model and by moderation, from two tenants, one with a webhook that dies; the page is opened,
given the operator key, and its plots and tables must show exactly that traffic. A tenant's
admin key gets the page's 403 message instead, and an unknown key its 401.

Needs ``chromium`` on the PATH (``apt-get install chromium``): Playwright drives it over CDP,
its own browser download is neither wanted nor possible here."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from chatq.webhook_receiver import WebhookReceiver
from shared.api_keys import IssuedKey, create_api_key
from shared.db.engine import dispose_engine
from tests.conftest import NamespaceFactory, RunningStack, start_stack
from tests.e2e.test_pipeline import poll_until_finished, submit

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 30_000
MODERATED = "You stupid f.u.c.k.i.n.g idiots, where is my parcel?"
FAQ = {
    "question": "How do I reset my router?",
    "answer": "Hold the RESET button on the back for 5 seconds until the light flashes.",
}
# a function, not an expression: the page's Content-Security-Policy refuses eval, even to tests
COMPLETED_BARS_ADD_UP_TO = """(expected) => [...document.querySelectorAll(
    '#throughput-plot rect.completed')].reduce((sum, bar) => sum + Number(bar.dataset.count), 0)
    === expected"""


@dataclass
class Traffic:
    """What the stack did before the page was opened."""

    jobs: list[dict[str, Any]]  # every job, finished
    moderated_id: str
    dead_job_id: str
    operator: IssuedKey


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("no chromium on the PATH: `apt-get install -y chromium` installs it")
    return found


@pytest.fixture(scope="module")
def running(
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    server_namespace_factory: NamespaceFactory,
) -> Iterator[RunningStack]:
    running = start_stack(
        "embedded",
        tiny_model_dir,
        tmp_path_factory.mktemp("dashboard"),
        server_namespace_factory,
        default_max_new_tokens="4",
    )
    yield running
    running.stack.stop()
    dispose_engine(running.settings.database_url)


def _client(running: RunningStack, key: IssuedKey) -> httpx.Client:
    return httpx.Client(
        base_url=running.base_url, headers={"Authorization": f"Bearer {key.key}"}, timeout=60
    )


def _dead_deliveries(client: httpx.Client, job_id: str, timeout_s: float = 60) -> None:
    give_up_at = time.monotonic() + timeout_s
    while time.monotonic() < give_up_at:
        deliveries = client.get(f"/v1/jobs/{job_id}/webhooks").json()["data"]
        if deliveries and all(d["status"] == "dead" for d in deliveries):
            return
        time.sleep(0.2)
    raise AssertionError(f"the webhook of job {job_id} did not die within {timeout_s} s")


@pytest.fixture(scope="module")
def traffic(running: RunningStack) -> Traffic:
    url = running.settings.database_url
    school = create_api_key(url, "school")  # another tenant: no knowledge, no model alone
    operator = create_api_key(url, "ops", scopes=["operator"])
    with _client(running, running.key) as shop, _client(running, school) as other:
        assert shop.put("/v1/knowledge/faq/reset", json=FAQ).status_code in (200, 201)
        asked = [
            (shop, submit(shop, query="how can I reset my router?")),
            (shop, submit(shop, query=MODERATED)),
            *(
                (shop, submit(shop, query=f"Write a line about the sea, number {n}"))
                for n in range(3)
            ),
            (other, submit(other, query="When does the term start?")),
        ]
        with WebhookReceiver([running.key.webhook_secret]) as receiver:
            receiver.respond_with = 410  # Gone: the delivery is dead after one attempt
            hooked = submit(shop, query="Where is my parcel?", webhook_url=receiver.url)
            asked.append((shop, hooked))
            jobs = [poll_until_finished(client, job["id"], timeout_s=120) for client, job in asked]
            _dead_deliveries(shop, hooked["id"])
    assert all(job["status"] == "completed" for job in jobs), jobs
    assert {job["route"] for job in jobs} >= {"faq", "moderation", "llm"}
    return Traffic(jobs, asked[1][1]["id"], hooked["id"], operator)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser
        browser.close()


@dataclass
class Tab:
    page: Page
    # what the browser reported: a Content-Security-Policy violation, a script error, a failed
    # fetch
    problems: list[str]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    tab = Tab(page, [])
    page.on("console", lambda m: tab.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: tab.problems.append(str(error)))
    yield tab
    context.close()


def sign_in(page: Page, running: RunningStack, key: str) -> None:
    page.goto(f"{running.base_url}/dashboard")
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")


def data_values(page: Page, selector: str, name: str) -> list[float]:
    return page.eval_on_selector_all(
        selector, f"nodes => nodes.map(node => Number(node.dataset.{name}))"
    )


def test_the_plots_and_tables_show_the_stacks_traffic(
    running: RunningStack,
    traffic: Traffic,
    tab: Tab,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    page = tab.page
    started = time.monotonic()
    sign_in(page, running, traffic.operator.key)
    page.wait_for_selector("body[data-state=ready]")
    assert page.locator("#board").is_visible() and not page.locator("#key-form").is_visible()
    with _client(running, traffic.operator) as operator:
        figures = operator.get("/v1/operator/dashboard").json()

    # throughput: one bar per bucket that finished jobs, adding up to every job
    assert sum(data_values(page, "#throughput-plot rect.completed", "count")) == len(traffic.jobs)
    busy_buckets = [b for b in figures["throughput"] if b["completed"]]
    assert page.locator("#throughput-plot rect.completed").count() == len(busy_buckets)
    # latency: a point per bucket with completed jobs on each of the four series
    for series, field in (("total-p50", "total_ms_p50"), ("queue-p95", "queue_ms_p95")):
        points = data_values(page, f"#latency-plot circle.{series}", "value")
        assert sorted(points) == sorted(
            b[field] for b in figures["latency"] if b[field] is not None
        )
        assert len(points) == len(busy_buckets)
    # batch sizes: every job the model answered, in the batch it ran in
    model_jobs = [job for job in traffic.jobs if job["route"] == "llm"]
    assert sum(data_values(page, "#batch-plot rect.bar", "jobs")) == len(model_jobs)
    sizes = data_values(page, "#batch-plot rect.bar", "batchSize")
    assert set(sizes) == {job["timings"]["batch_size"] for job in model_jobs}
    # the route mix: a labelled bar per route
    labels = page.locator("#routes-plot text.route-label").all_text_contents()
    routes = {job["route"] for job in traffic.jobs}
    assert set(labels) == routes and {"faq", "moderation", "llm"} <= routes
    by_route = dict(
        zip(
            page.eval_on_selector_all(
                "#routes-plot rect.route-bar", "bars => bars.map(b => b.dataset.route)"
            ),
            data_values(page, "#routes-plot rect.route-bar", "jobs"),
            strict=True,
        )
    )
    assert by_route == {r: sum(j["route"] == r for j in traffic.jobs) for r in routes}

    # the tables: queues, recent jobs with route and moderation, the dead webhook
    queue_rows = page.locator("#queue-table tbody tr")
    assert queue_rows.locator("td:first-child").all_inner_texts() == [
        q["name"] for q in figures["queues"]
    ]
    assert all(text.isdigit() for text in queue_rows.locator("td:nth-child(2)").all_inner_texts())
    jobs_table = page.locator("#jobs-table")
    for job in traffic.jobs:
        assert job["id"] in jobs_table.inner_text()
    moderated = jobs_table.locator("tr", has_text=traffic.moderated_id).inner_text()
    assert "moderation" in moderated and "flagged" in moderated and "block" in moderated
    dead = page.locator("#dead-table tr", has_text=traffic.dead_job_id).inner_text()
    assert "127.0.0.1" in dead and "410" in dead and "/hooks" not in dead
    assert page.locator("#dead-count").inner_text() == "1"
    assert page.locator("#outbox").inner_text() == "0"

    shot = tmp_path_factory.mktemp("screenshots") / "operator-dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}; rendered in {time.monotonic() - started:.1f} s")

    # it refreshes on its own: a new job appears without a reload
    with _client(running, running.key) as shop:
        poll_until_finished(shop, submit(shop, query="how can I reset my router?")["id"])
    page.wait_for_function(COMPLETED_BARS_ADD_UP_TO, arg=len(traffic.jobs) + 1)
    # another window: wider buckets, the same jobs
    page.select_option("#window", "6h")
    page.wait_for_function(
        "() => document.getElementById('throughput-unit').textContent.includes('5 min')"
    )
    assert (
        sum(data_values(page, "#throughput-plot rect.completed", "count")) == len(traffic.jobs) + 1
    )
    # the key stays with the tab: a reload shows the data again, "forget" asks for the key
    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    page.click("#sign-out")
    assert page.locator("#key-form").is_visible() and not page.locator("#board").is_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    assert tab.problems == []


def test_a_tenants_admin_key_sees_the_403_message_and_no_data(
    running: RunningStack, traffic: Traffic, tab: Tab
) -> None:
    page = tab.page
    sign_in(page, running, running.key.key)  # the shop's key: every scope a tenant has
    page.wait_for_selector("body[data-state=refused]")
    message = page.locator("#message").inner_text()
    assert "403" in message and "operator" in message
    assert not page.locator("#board").is_visible()
    assert not page.locator("#controls").is_visible()
    assert page.locator("#key-form").is_visible()  # ready for another key
    assert traffic.moderated_id not in page.content()

    sign_in(page, running, "cq_not_a_key")
    page.wait_for_function("() => document.getElementById('message').textContent.includes('401')")
    assert page.locator("#message").inner_text().startswith("The key was refused (401)")
    # the refusals are answers the page expected; the browser logs the failed fetches
    assert all("status of 40" in problem for problem in tab.problems), tab.problems
