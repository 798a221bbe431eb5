"""The Grafana dashboard and the Prometheus scrape example agree with the metrics chatq declares.

The metric names come from ``shared.metrics`` itself, so a metric that is renamed or added
without its panel fails here rather than as an empty graph in front of an operator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics
from shared.system_state import QueueState, SystemState

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "chatq-dashboard.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "deploy" / "compose.yml"

DATASOURCE = "${DS_PROMETHEUS}"
METRIC_NAME = re.compile(r"\bchatq_[a-z0-9_]+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")

# The series names each metric type exposes, after its own name.
SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}
EXTRA_LABELS = {"histogram": {"le"}, "summary": {"quantile"}}

# A state with a queue in it, so SystemGauges yields every gauge it has.
SYSTEM_READING = SystemState({"chat.inference": QueueState(0, 0)})

COMPOSE_SCRAPE_PORT = 9100  # CHATQ_METRICS_PORT each metrics-serving container would set


@dataclass(frozen=True)
class DeclaredMetric:
    name: str
    type: str
    labels: frozenset[str]

    def series(self) -> list[str]:
        return [self.name + suffix for suffix in SERIES_SUFFIXES[self.type]]


def declared_metrics() -> list[DeclaredMetric]:
    """The chatq metrics shared.metrics declares, and the scrape-time gauges it collects."""
    found: list[DeclaredMetric] = []
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        (family,) = obj.describe()
        # label names are not part of prometheus-client's public surface; the constructor keeps
        # them here, and a test that breaks on an upgrade is better than one that checks less
        labels = frozenset(obj._labelnames) | EXTRA_LABELS.get(family.type, set())
        found.append(DeclaredMetric(family.name, family.type, labels))
    for family in metrics.SystemGauges(lambda: SYSTEM_READING).collect():
        labels = frozenset(label for sample in family.samples for label in sample.labels)
        found.append(DeclaredMetric(family.name, family.type, labels))
    return [metric for metric in found if metric.name.startswith("chatq_")]


def series_index() -> dict[str, DeclaredMetric]:
    """Every series name Prometheus can hold for a chatq metric → the metric it belongs to."""
    index: dict[str, DeclaredMetric] = {}
    for metric in declared_metrics():
        assert metric.type in SERIES_SUFFIXES, f"{metric.name}: teach this test {metric.type}"
        for series in metric.series():
            assert series not in index, f"two metrics expose {series}"
            index[series] = metric
    return index


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels a collapsed row holds."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in all_panels(dashboard) if panel["type"] != "row"]


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in query_panels(dashboard) for target in panel["targets"]]


def test_the_dashboard_is_a_grafana_dashboard_on_a_chosen_prometheus() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["title"] and dashboard["uid"]
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert f"${{{variable['name']}}}" == DATASOURCE
    assert variable["query"] == "prometheus"
    for panel in query_panels(dashboard):
        assert panel["datasource"]["uid"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE, panel["title"]


def test_every_panel_has_a_title_and_a_query() -> None:
    dashboard = load_dashboard()
    panels = list(all_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["title"].strip(), panel
    for panel in query_panels(dashboard):
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in load_dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_metric_a_query_names_is_declared_in_shared_metrics() -> None:
    index = series_index()
    unknown = {
        name for expr in expressions(load_dashboard()) for name in METRIC_NAME.findall(expr)
    } - set(index)
    assert unknown == set()


def test_every_declared_metric_has_a_panel() -> None:
    index = series_index()
    shown = {
        index[name].name
        for expr in expressions(load_dashboard())
        for name in METRIC_NAME.findall(expr)
        if name in index
    }
    missing = {metric.name for metric in declared_metrics()} - shown
    assert missing == set()


def test_queries_group_and_filter_only_by_labels_their_metrics_have() -> None:
    index = series_index()
    for panel in query_panels(load_dashboard()):
        for target in panel["targets"]:
            expr = target["expr"]
            known = set().union(*(index[name].labels for name in METRIC_NAME.findall(expr)))
            grouped = {
                label.strip()
                for labels in GROUPING.findall(expr)
                for label in labels.split(",")
                if label.strip()
            }
            filtered = {
                label
                for matchers in SELECTOR.findall(expr)
                for label in MATCHER_LABEL.findall(matchers)
            }
            assert grouped | filtered <= known, f"{panel['title']}: {expr}"
            # a legend can only show a label the aggregation kept
            legend = set(LEGEND_LABEL.findall(target.get("legendFormat", "")))
            assert legend <= grouped - {"le"}, f"{panel['title']}: {target['legendFormat']}"


def test_histogram_quantiles_keep_the_bucket_boundaries() -> None:
    for expr in expressions(load_dashboard()):
        for quantile in re.findall(r"histogram_quantile\([^,]+,(.*)", expr):
            assert "_bucket[" in quantile, expr
            assert re.search(r"\bby\s*\([^)]*\ble\b", quantile), f"le dropped: {expr}"


def load_prometheus() -> dict[str, Any]:
    return yaml.safe_load(PROMETHEUS.read_text())


def scrape_targets(job: dict[str, Any]) -> set[tuple[str, int]]:
    """(host, port) of a job's static targets and its DNS-discovered service names."""
    targets: set[tuple[str, int]] = set()
    for static in job.get("static_configs", []):
        for target in static["targets"]:
            host, port = target.rsplit(":", 1)
            targets.add((host, int(port)))
    for dns in job.get("dns_sd_configs", []):
        assert dns.get("type", "SRV") == "A", "Docker's DNS answers A records, not SRV"
        targets |= {(name, int(dns["port"])) for name in dns["names"]}
    return targets


def test_the_scrape_example_names_each_job_once() -> None:
    config = load_prometheus()
    names = [job["job_name"] for job in config["scrape_configs"]]
    assert all(isinstance(name, str) and name for name in names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("job_name", "command"),
    [
        ("chatq-api", "api"),
        ("chatq-worker", "worker"),
        ("chatq-postprocess", "postprocess"),
        ("chatq-delivery", "delivery"),
    ],
)
def test_the_scrape_example_reaches_each_compose_service(job_name: str, command: str) -> None:
    jobs = {job["job_name"]: job for job in load_prometheus()["scrape_configs"]}
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    # the services that run this command by default (profiles such as gpu are opt-in)
    running = {
        name
        for name, service in services.items()
        if service.get("command") == ["chatq", command] and not service.get("profiles")
    }
    assert running, f"compose runs no `chatq {command}`"
    if command == "api":
        # the API serves /metrics on the port it listens on, the container side of the mapping
        ports = {int(str(mapping).rsplit(":", 1)[-1]) for mapping in services["api"]["ports"]}
    else:
        ports = {COMPOSE_SCRAPE_PORT}
    job = jobs[job_name]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert scrape_targets(job) == {(name, port) for name in running for port in ports}
