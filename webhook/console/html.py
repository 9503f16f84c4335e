"""HTML for the dashboard: one layout, tables and forms, every outside value escaped.

Pages are plain strings built here; a value from outside (an id, a shop, an error, a
timeline detail) only ever enters through `esc`. The pages carry no script at all and the
Content-Security-Policy forbids one, so markup that slipped through would still not run.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from webhook.console.login import Viewer

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not `no-referrer`: with it a browser sends `Origin: null` on the pages' own forms,
    # which the cross-site check must refuse.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d232a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header b{margin-right:1em}
header form{margin-left:auto}main{padding:1em 1.2em;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.2em;min-width:40%}
th,td{border:1px solid #dde1e6;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:13px;word-break:break-all}.err{color:#a4161a}.note{color:#5c6670}
.box{background:#fff;border:1px solid #dde1e6;padding:.6em 1em;margin:.5em 0 1em}
.flash{background:#e6f4ea;border-color:#9bd3ae}.warn{background:#fff4e5;border-color:#f0c27b}
form.inline{display:inline}input,select,button{font:inherit;margin:.1em .3em .1em 0}
button{cursor:pointer}.row{display:flex;gap:2.5em;flex-wrap:wrap;align-items:flex-start}
.state-failed{color:#a4161a;font-weight:600}.state-reported{color:#1b6e3a}
"""

NAV = (
    ("/admin", "Overview"),
    ("/admin/dashboard/sessions", "Sessions"),
    ("/admin/dashboard/failed", "Dead letters"),
    ("/admin/dashboard/held", "Held money"),
    ("/admin/dashboard/shops", "Shops"),
)


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def href(path: str, params: Mapping[str, object] | None = None) -> str:
    """A link with its query encoded, ready to go inside an attribute."""
    query = {k: str(v) for k, v in (params or {}).items() if v not in (None, "")}
    return esc(path + ("?" + urlencode(query) if query else ""))


def session_link(session_id: str) -> str:
    target = href("/admin/dashboard/session", {"id": session_id})
    return f'<a href="{target}"><code>{esc(session_id)}</code></a>'


def table(headings: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str) -> str:
    """`rows` hold cells already escaped (or built from escaped parts)."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="note">{esc(empty)}</p>'
    names = list(headings)
    head = "".join(f"<th>{esc(h)}</th>" for h in names)
    thead = f"<thead><tr>{head}</tr></thead>" if any(names) else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def hidden(fields: Mapping[str, object]) -> str:
    return "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
        for k, v in fields.items()
        if v not in (None, "")
    )


def post_form(action: str, seen: Viewer, fields: Mapping[str, object], button: str) -> str:
    """A form that changes something: it carries the login's CSRF token."""
    guard = {"csrf": seen.csrf} if seen.csrf else {}
    return (
        f'<form class="inline" method="post" action="{esc(action)}">'
        f"{hidden({**guard, **fields})}<button type=submit>{esc(button)}</button></form>"
    )


def page(title: str, body: str, seen: Viewer | None, *, status: int = 200) -> web.Response:
    links = "".join(f'<a href="{path}">{name}</a>' for path, name in NAV)
    logout = ""
    if seen is not None and seen.login is not None:
        logout = post_form("/admin/logout", seen, {}, "Log out")
    bar = f"<header><b>payhook</b>{links}{logout}</header>" if seen is not None else ""
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · payhook</title><style>{_STYLE}</style></head>"
        f"<body>{bar}<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )
    return web.Response(
        text=document, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )
