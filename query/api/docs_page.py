"""/docs: the OpenAPI document rendered as one self-contained HTML page (no scripts, no CDN:
the machines this runs on may have no internet)."""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222 }
h2 { margin-top: 2.5rem; font-family: ui-monospace, monospace; font-size: 1.1rem }
.method { background: #2b6cb0; color: white; padding: 0.1rem 0.5rem; border-radius: 0.25rem; margin-right: 0.5rem }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0 }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid #ddd; padding: 0.3rem 0.5rem }
code { font-family: ui-monospace, monospace; font-size: 0.9em }
"""


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    text = str(schema.get("type", "object"))
    if "enum" in schema:
        text += " (" + " | ".join(str(value) for value in schema["enum"]) + ")"
    if "format" in schema:
        text += f", {schema['format']}"
    if "minimum" in schema or "maximum" in schema:
        text += f", {schema.get('minimum', '')}..{schema.get('maximum', '')}"
    if "default" in schema:
        text += f", default {schema['default']}"
    if schema.get("type") == "array":
        text += " of " + _schema_text(schema.get("items", {}))
    return text


def _parameters(parameters: list[dict[str, Any]]) -> str:
    if not parameters:
        return ""
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}"
        f"{' (required)' if p.get('required') else ''}</td>"
        f"<td><code>{escape(_schema_text(p.get('schema', {})))}</code></td>"
        f"<td>{escape(p.get('description', ''))}</td></tr>"
        for p in parameters
    )
    return f"<table><tr><th>parameter</th><th>in</th><th>schema</th><th>meaning</th></tr>{rows}</table>"


def _responses(responses: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(status)}</code></td><td>{escape(response.get('description', ''))}</td></tr>"
        for status, response in responses.items()
    )
    return f"<table><tr><th>status</th><th>meaning</th></tr>{rows}</table>"


def render_docs(document: dict[str, Any]) -> str:
    info = document["info"]
    schemes = document["components"]["securitySchemes"]
    sections = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            sections.append(
                f"<h2><span class='method'>{method.upper()}</span>{escape(path)}</h2>"
                f"<p>{escape(operation.get('summary', ''))}</p>"
                f"{_parameters(operation.get('parameters', []))}{_responses(operation['responses'])}"
            )
    auth = "".join(
        f"<li><code>{escape(scheme.get('name') or 'Authorization: Bearer')}</code>: "
        f"{escape(scheme.get('description', ''))}</li>"
        for scheme in schemes.values()
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(info['title'])} API</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} API</h1><p>{escape(info.get('description', ''))}</p>"
        f"<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI {escape(document['openapi'])}).</p>"
        f"<h3>Authentication</h3><ul>{auth}</ul>{''.join(sections)}</body></html>"
    )
