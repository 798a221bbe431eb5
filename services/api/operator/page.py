"""``GET /dashboard``: the operator dashboard as one self-contained HTML page.

A browser cannot send a bearer key when it navigates, so the page itself is public and holds no
data: it asks for an operator key (kept in ``sessionStorage``, so it goes with the tab), fetches
``GET /v1/operator/dashboard`` with it every few seconds and draws the plots as SVG with the
small script below. Nothing is fetched from anywhere else (it works on a network without the
internet), and the Content-Security-Policy lets the page run only its own inline style and
script, named by their SHA-256, and talk only to its own origin. Data reaches the page as text
(``textContent``, SVG attributes), never as markup.
"""

from __future__ import annotations

import base64
import hashlib

REFRESH_S = 5

STYLE = """
[hidden]{display:none!important}
:root{--ink:#1d2330;--muted:#5b6474;--line:#d8dce5;--ok:#2f855a;--bad:#c53030;--p50:#2b6cb0;
--p95:#805ad5;--q50:#dd6b20;--q95:#b7791f;--bar:#4a5568}
body{font-family:system-ui,sans-serif;margin:1rem auto;max-width:78rem;padding:0 1rem;
color:var(--ink);line-height:1.4}
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:baseline}h1{font-size:1.4rem;margin:0}
h2{font-size:1.05rem;margin:.2rem 0 .4rem}#status{color:var(--muted);font-size:.9rem}
form,#controls{display:flex;gap:.5rem;align-items:center;margin:.6rem 0}
#message{padding:.5rem .8rem;border-radius:4px;background:#fff5f5;border:1px solid var(--bad)}
#message.info{background:#f2f4f8;border-color:var(--line)}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(30rem,1fr));gap:1rem}
section{border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem;overflow-x:auto}
.tiles{display:flex;gap:2rem;flex-wrap:wrap}.tile b{display:block;font-size:1.6rem}
.tile span{color:var(--muted);font-size:.85rem}
table{border-collapse:collapse;width:100%;font-size:.88rem}
td,th{border-bottom:1px solid var(--line);padding:.2rem .4rem;text-align:left;white-space:nowrap}
td.num,th.num{text-align:right}td.wrap{white-space:normal;word-break:break-word}
.flagged{color:var(--bad);font-weight:600}.note{color:var(--muted);font-size:.85rem}
svg.plot{width:100%;height:auto;display:block}
svg text{font-size:11px;fill:var(--muted)}svg .axis{stroke:var(--line)}
svg .completed{fill:var(--ok)}svg .failed{fill:var(--bad)}svg .bar{fill:var(--bar)}
svg .route-bar{fill:var(--p50)}svg text.route-label{fill:var(--ink)}
svg .series{fill:none;stroke-width:1.5}
.total-p50{stroke:var(--p50);fill:var(--p50)}.total-p95{stroke:var(--p95);fill:var(--p95)}
.queue-p50{stroke:var(--q50);fill:var(--q50)}.queue-p95{stroke:var(--q95);fill:var(--q95)}
.legend{display:flex;gap:1rem;font-size:.8rem;color:var(--muted)}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.25rem;vertical-align:-1px}
.legend i.total-p50{background:var(--p50)}.legend i.total-p95{background:var(--p95)}
.legend i.queue-p50{background:var(--q50)}.legend i.queue-p95{background:var(--q95)}
.legend i.completed{background:var(--ok)}.legend i.failed{background:var(--bad)}
"""

SCRIPT = """
"use strict";
const KEY_STORE = "chatq.operatorKey";
const REFRESH_MS = __REFRESH_MS__;
const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 640, HEIGHT = 220, LEFT = 48, RIGHT = 8, TOP = 10, BOTTOM = 24;
const $ = (id) => document.getElementById(id);
let timer = null;
let latest = 0;  // the newest refresh: an older one still in flight draws nothing

function setState(state) { document.body.dataset.state = state; }

function showMessage(text, kind) {
  const box = $("message");
  box.textContent = text;
  box.className = kind || "";
  box.hidden = !text;
}

function svgNode(tag, attrs, parent, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  parent.appendChild(node);
  return node;
}

function tooltip(node, text) {
  svgNode("title", {}, node, text);
}

function clearPlot(id, label) {
  const plot = $(id);
  plot.replaceChildren();
  plot.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  plot.setAttribute("role", "img");
  plot.setAttribute("aria-label", label);
  return plot;
}

function emptyPlot(plot, text) {
  svgNode("text", {x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "empty"},
    plot, text);
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function niceMax(value) {
  if (value <= 0) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  return Math.ceil(value / step) * step;
}

function plain(value) { return String(value); }

function duration(ms) {
  return ms >= 1000 ? `${Number((ms / 1000).toFixed(1))} s` : `${Math.round(ms)} ms`;
}

function axes(plot, max, label, firstLabel, lastLabel) {
  const bottom = HEIGHT - BOTTOM;
  svgNode("line", {x1: LEFT, y1: bottom, x2: WIDTH - RIGHT, y2: bottom, class: "axis"}, plot);
  svgNode("line", {x1: LEFT, y1: TOP, x2: LEFT, y2: bottom, class: "axis"}, plot);
  svgNode("text", {x: LEFT - 4, y: TOP + 8, "text-anchor": "end", class: "y-max"}, plot,
    label(max));
  svgNode("text", {x: LEFT - 4, y: bottom, "text-anchor": "end"}, plot, `0`);
  svgNode("text", {x: LEFT, y: HEIGHT - 6}, plot, firstLabel);
  svgNode("text", {x: WIDTH - RIGHT, y: HEIGHT - 6, "text-anchor": "end"}, plot, lastLabel);
}

function scaleY(value, max) {
  return TOP + (HEIGHT - BOTTOM - TOP) * (1 - value / max);
}

function drawThroughput(buckets, bucketS) {
  const plot = clearPlot("throughput-plot", "Jobs finished per bucket");
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.completed + b.failed)));
  axes(plot, max, plain, clock(buckets[0].start), clock(buckets[buckets.length - 1].start));
  const slot = (WIDTH - LEFT - RIGHT) / buckets.length;
  buckets.forEach((bucket, i) => {
    let below = 0;
    for (const kind of ["completed", "failed"]) {
      const count = bucket[kind];
      if (!count) continue;
      const y = scaleY(below + count, max);
      tooltip(svgNode("rect", {x: LEFT + (i + 0.1) * slot, y, width: slot * 0.8,
        height: scaleY(below, max) - y, class: kind, "data-count": count,
        "data-start": bucket.start}, plot), `${clock(bucket.start)}: ${count} ${kind}`);
      below += count;
    }
  });
  $("throughput-unit").textContent = `jobs finished per ${bucketS / 60} min`;
}

const SERIES = [
  ["total_ms_p50", "total-p50"], ["total_ms_p95", "total-p95"],
  ["queue_ms_p50", "queue-p50"], ["queue_ms_p95", "queue-p95"],
];

function drawLatency(buckets) {
  const plot = clearPlot("latency-plot", "Latency percentiles per bucket, in milliseconds");
  const values = buckets.flatMap((b) => SERIES.map(([field]) => b[field]))
    .filter((v) => v !== null);
  if (!values.length) { emptyPlot(plot, "no completed jobs in this window"); return; }
  const max = niceMax(Math.max(...values));
  axes(plot, max, duration, clock(buckets[0].start), clock(buckets[buckets.length - 1].start));
  const slot = (WIDTH - LEFT - RIGHT) / buckets.length;
  for (const [field, name] of SERIES) {
    const points = [];
    buckets.forEach((bucket, i) => {
      if (bucket[field] === null) return;
      points.push([LEFT + (i + 0.5) * slot, scaleY(bucket[field], max), bucket]);
    });
    if (points.length > 1) {
      svgNode("polyline", {points: points.map(([x, y]) => `${x},${y}`).join(" "),
        class: `series ${name}`}, plot);
    }
    for (const [x, y, bucket] of points) {
      tooltip(svgNode("circle", {cx: x, cy: y, r: 3, class: `point ${name}`,
        "data-value": bucket[field], "data-start": bucket.start}, plot),
        `${clock(bucket.start)} ${name}: ${duration(bucket[field])}`);
    }
  }
}

function drawBatchSizes(counts) {
  const plot = clearPlot("batch-plot", "Jobs by the size of the batch the model ran them in");
  if (!counts.length) { emptyPlot(plot, "the model answered no job in this window"); return; }
  const largest = counts[counts.length - 1].batch_size;
  const max = niceMax(Math.max(...counts.map((c) => c.jobs)));
  axes(plot, max, plain, "batch of 1", `batch of ${largest}`);
  const slot = (WIDTH - LEFT - RIGHT) / largest;
  for (const count of counts) {
    const x = LEFT + (count.batch_size - 1) * slot + slot * 0.15;
    const y = scaleY(count.jobs, max);
    tooltip(svgNode("rect", {x, y, width: slot * 0.7, height: HEIGHT - BOTTOM - y, class: "bar",
      "data-batch-size": count.batch_size, "data-jobs": count.jobs}, plot),
      `batch of ${count.batch_size}: ${count.jobs} jobs`);
    svgNode("text", {x: x + slot * 0.35, y: y - 3, "text-anchor": "middle"}, plot,
      String(count.jobs));
  }
}

function drawRoutes(routes) {
  const plot = clearPlot("routes-plot", "Completed jobs by route");
  if (!routes.length) { emptyPlot(plot, "no completed jobs in this window"); return; }
  const max = Math.max(...routes.map((r) => r.jobs));
  const row = Math.min(28, (HEIGHT - TOP) / routes.length);
  const labelWidth = 90, barSpace = WIDTH - labelWidth - 60;
  routes.forEach((route, i) => {
    const y = TOP + i * row;
    svgNode("text", {x: labelWidth - 6, y: y + row * 0.65, "text-anchor": "end",
      class: "route-label"}, plot, route.route);
    const width = Math.max(2, barSpace * route.jobs / max);
    svgNode("rect", {x: labelWidth, y: y + row * 0.15, width, height: row * 0.7,
      class: "route-bar", "data-route": route.route, "data-jobs": route.jobs}, plot);
    svgNode("text", {x: labelWidth + width + 4, y: y + row * 0.65, class: "route-count"}, plot,
      String(route.jobs));
  });
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (className) td.className = className;
  return td;
}

function fillTable(id, rows, columns, empty) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = columns.length;
    td.className = "note";
    td.textContent = empty;
    return;
  }
  for (const item of rows) {
    const row = body.insertRow();
    for (const [value, className] of columns) {
      cell(row, value(item), className ? className(item) : "");
    }
  }
}

function when(iso) { return new Date(iso).toLocaleString(); }

function render(data) {
  $("outbox").textContent = data.outbox_backlog;
  $("dead-count").textContent = data.webhooks_dead;
  $("jobs-read").textContent = data.jobs_read;
  $("capped").hidden = !data.jobs_capped;
  fillTable("queue-table", data.queues, [
    [(q) => q.name], [(q) => q.ready, () => "num"], [(q) => q.consumers, () => "num"],
  ], "no queues");
  $("broker-note").textContent = data.broker_note || "";
  drawThroughput(data.throughput, data.bucket_s);
  drawLatency(data.latency);
  drawBatchSizes(data.batch_sizes);
  drawRoutes(data.routes);
  fillTable("jobs-table", data.recent_jobs, [
    [(j) => when(j.created_at)], [(j) => j.id], [(j) => j.tenant], [(j) => j.status],
    [(j) => j.route],
    [(j) => j.moderation_flagged === null ? null : (j.moderation_flagged ? "flagged" : "clean"),
      (j) => j.moderation_flagged ? "flagged" : ""],
    [(j) => j.moderation_action],
    [(j) => j.total_ms === null ? null : Math.round(j.total_ms), () => "num"],
  ], "no jobs yet");
  fillTable("dead-table", data.dead_webhooks, [
    [(d) => when(d.created_at)], [(d) => d.id], [(d) => d.job_id], [(d) => d.event_type],
    [(d) => d.url_host], [(d) => d.attempts, () => "num"], [(d) => d.last_status_code],
    [(d) => d.last_error, () => "wrap"],
  ], "no dead webhooks");
  $("status").textContent = `updated ${new Date(data.generated_at).toLocaleTimeString()}`;
}

async function problemDetail(response) {
  try {
    const problem = await response.json();
    return problem.detail || problem.title || "";
  } catch (error) {
    return "";
  }
}

function signedOut(text) {
  sessionStorage.removeItem(KEY_STORE);
  clearTimeout(timer);
  latest++;
  $("key-form").hidden = false;
  $("controls").hidden = true;
  $("board").hidden = true;
  showMessage(text, text ? "" : "info");
  setState(text ? "refused" : "signed-out");
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++latest;
  const key = sessionStorage.getItem(KEY_STORE);
  if (!key) { signedOut(""); return; }
  $("key-form").hidden = true;
  $("controls").hidden = false;
  const url = `/v1/operator/dashboard?window=${encodeURIComponent($("window").value)}`;
  let response;
  try {
    response = await fetch(url, {headers: {Authorization: `Bearer ${key}`}, cache: "no-store"});
  } catch (error) {
    if (mine !== latest) return;
    showMessage(`The API did not answer (${error.message}); retrying.`);
    timer = setTimeout(refresh, REFRESH_MS);
    return;
  }
  if (mine !== latest) return;
  if (response.status === 401) {
    signedOut(`The key was refused (401): ${await problemDetail(response)}`);
    return;
  }
  if (response.status === 403) {
    signedOut(`This key may not see the dashboard (403): ${await problemDetail(response)} ` +
      "It needs a key with the operator scope " +
      "(chatq keys create --name ops --scopes operator).");
    return;
  }
  if (!response.ok) {
    showMessage(`The API answered ${response.status}: ${await problemDetail(response)} ` +
      "Retrying.");
    timer = setTimeout(refresh, REFRESH_MS);
    return;
  }
  const figures = await response.json();
  if (mine !== latest) return;
  render(figures);
  showMessage("");
  $("board").hidden = false;
  setState("ready");
  timer = setTimeout(refresh, REFRESH_MS);
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  $("key").value = "";
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  setState("loading");
  refresh();
});
$("sign-out").addEventListener("click", () => signedOut(""));
$("window").addEventListener("change", refresh);
refresh();
""".replace("__REFRESH_MS__", str(REFRESH_S * 1000))

BODY = """
<header><h1>chatq operator dashboard</h1><span id="status" role="status"></span></header>
<form id="key-form" hidden autocomplete="off">
<label for="key">Operator key</label>
<input id="key" name="key" type="password" autocomplete="off" spellcheck="false" size="40">
<button type="submit">Show the dashboard</button>
<span class="note">kept in this tab only (sessionStorage)</span>
</form>
<div id="controls" hidden>
<label for="window">Window</label>
<select id="window"><option value="15m">15 minutes</option><option value="1h" selected>1 hour
</option><option value="6h">6 hours</option><option value="24h">24 hours</option></select>
<button id="sign-out" type="button">Forget the key</button>
</div>
<p id="message" role="alert" hidden></p>
<main id="board" hidden>
<div class="grid">
<section id="summary"><h2>Backlogs</h2><div class="tiles">
<div class="tile"><b id="outbox"></b><span>outbox backlog (accepted, not yet queued)</span></div>
<div class="tile"><b id="dead-count"></b><span>dead webhooks</span></div>
<div class="tile"><b id="jobs-read"></b><span>finished jobs in the window</span></div>
</div><p id="capped" class="note" hidden>The window holds more jobs than are read: the figures
cover the newest.</p></section>
<section id="queues"><h2>Queues</h2><table id="queue-table"><thead><tr><th>queue</th>
<th class="num">waiting</th><th class="num">consumers</th></tr></thead><tbody></tbody></table>
<p id="broker-note" class="note"></p></section>
<section id="throughput"><h2>Throughput <span id="throughput-unit" class="note"></span></h2>
<svg id="throughput-plot" class="plot"></svg><div class="legend"><span><i class="completed">
</i>completed</span><span><i class="failed"></i>failed</span></div></section>
<section id="latency"><h2>Latency (p50, p95)</h2><svg id="latency-plot" class="plot"></svg>
<div class="legend"><span><i class="total-p50"></i>total p50</span><span><i class="total-p95">
</i>total p95</span><span><i class="queue-p50"></i>queue p50</span><span><i class="queue-p95">
</i>queue p95</span></div></section>
<section id="batch-sizes"><h2>Batch sizes</h2><svg id="batch-plot" class="plot"></svg></section>
<section id="routes"><h2>Route mix</h2><svg id="routes-plot" class="plot"></svg></section>
</div>
<section id="recent-jobs"><h2>Recent jobs</h2><table id="jobs-table"><thead><tr><th>created</th>
<th>job</th><th>tenant</th><th>status</th><th>route</th><th>moderation</th><th>action</th>
<th class="num">total ms</th></tr></thead><tbody></tbody></table></section>
<section id="dead-webhooks"><h2>Dead webhooks</h2><table id="dead-table"><thead><tr>
<th>created</th><th>delivery</th><th>job</th><th>event</th><th>host</th>
<th class="num">attempts</th><th>last status</th><th>last error</th></tr></thead><tbody></tbody>
</table></section>
</main>
"""


def _source_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


# The page allows itself and nothing else: its one style and one script by hash (not
# 'unsafe-inline'), fetches to its own origin only, no frames, no forms sent anywhere.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {_source_hash(SCRIPT)}",
        f"style-src {_source_hash(STYLE)}",
        "connect-src 'self'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<meta name="referrer" content="no-referrer">'
    '<link rel="icon" href="data:,">'
    f"<title>chatq operator dashboard</title><style>{STYLE}</style></head>"
    f'<body data-state="starting">{BODY}<script>{SCRIPT}</script></body></html>'
)
