"""``GET /docs``: the API reference as one HTML page, rendered on the server from the OpenAPI
document (``/openapi.json``): no script and nothing fetched from elsewhere, so it works on a
network without the internet and under a strict Content-Security-Policy."""

from __future__ import annotations

from html import escape
from typing import Any

METHOD_ORDER = ("get", "post", "put", "patch", "delete")

STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1d2330;line-height:1.45}
h1{margin-bottom:.2rem}section{border-top:1px solid #d8dce5;padding:.6rem 0}
.method{display:inline-block;min-width:4.2rem;font:700 .8rem monospace;text-transform:uppercase}
code{background:#f2f4f8;padding:0 .25rem;border-radius:3px}.scope{color:#7a4c00}
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #d8dce5;padding:.15rem .5rem;
text-align:left;vertical-align:top;font-size:.92rem}nav a{margin-right:.8rem}
"""


def render_docs(document: dict[str, Any]) -> str:
    info = document["info"]
    by_tag: dict[str, list[str]] = {}
    for path, item in document["paths"].items():
        for method in sorted(item, key=METHOD_ORDER.index):
            operation = item[method]
            tag = (operation.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append(_operation(method, path, operation))
    nav = " ".join(f'<a href="#{escape(tag)}">{escape(tag)}</a>' for tag in by_tag)
    sections = "".join(
        f'<h2 id="{escape(tag)}">{escape(tag)}</h2>{"".join(operations)}'
        for tag, operations in by_tag.items()
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info['title'])} API</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>"
        f"<p>{escape(info.get('description', ''))}</p>"
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>'
        f"<nav>{nav}</nav>{sections}</body></html>"
    )


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    scope = operation.get("x-required-scope")
    header = (
        f'<span class="method">{method}</span> <code>{escape(path)}</code> '
        f"— {escape(operation.get('summary', ''))}"
        + (f' <span class="scope">(scope <code>{escape(scope)}</code>)</span>' if scope else "")
    )
    parts = [f'<section id="{escape(operation.get("operationId", path))}"><div>{header}</div>']
    if operation.get("description"):
        parts.append(f"<p>{escape(operation['description'])}</p>")
    parameters = operation.get("parameters") or []
    if parameters:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'required' if p.get('required') else ''}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in parameters
        )
        parts.append(
            f"<table><tr><th>parameter</th><th>in</th><th></th><th></th></tr>{rows}</table>"
        )
    body = (operation.get("requestBody") or {}).get("content", {})
    for media, content in body.items():
        reference = content.get("schema", {}).get("$ref", "")
        parts.append(
            f"<p>Body ({escape(media)}): <code>{escape(reference.rsplit('/', 1)[-1])}</code></p>"
        )
    rows = "".join(
        f"<tr><td>{escape(status)}</td><td>{escape(response.get('description', ''))}</td></tr>"
        for status, response in operation.get("responses", {}).items()
    )
    parts.append(f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table></section>")
    return "".join(parts)
