"""The dashboard's page bodies: what each screen shows, given what the handlers read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from readouts.activity import LATENCY_SAMPLE, Activity
from readouts.held import Held
from readouts.stats import DUE_SCAN, Stats, held_text
from sessions.models import Kind, Session, TimelineEvent
from sessions.replay import Replayed
from sessions.states import State
from webhook.console.api import Filters
from webhook.console.charts import Series, bar_chart
from webhook.console.html import esc, hidden, href, post_form, session_link, table, when
from webhook.console.login import Viewer

# What the session page shows: the operator's view, nothing of the buyer (no cancel URL,
# checkout id or group, and of Shopify's redirect URL only its host and page), no token.
SESSION_FIELDS = (
    "kind",
    "shop",
    "state",
    "payment_id",
    "gid",
    "test",
    "outcome",
    "reject_code",
    "psp_reference",
    "report",
    "pending_reason",
    "psp_attempts",
    "report_attempts",
    "deliveries",
    "replays",
)
SESSION_TIMES = ("created_at", "updated_at", "pending_expires_at", "failed_at")


def buyer_sent_to(url: str | None) -> str:
    """Where Shopify said to send the buyer, as the session page shows it: the host and the
    last path segment (which page), not the path between or the query, which may hold the
    checkout's token."""
    if url is None:
        return "-"
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    page = parts.path.rstrip("/").rpartition("/")[2]
    return f"{parts.scheme}://{host}{port}/…/{page}"


def _money(session: Session) -> str:
    if session.amount is None:
        return "-"
    return esc(f"{session.amount_text} {session.currency}")


def _state(state: State) -> str:
    return f'<span class="state-{esc(state)}">{esc(state)}</span>'


def overview_body(stats: Stats, activity: Activity) -> str:
    kinds = [k.value for k in Kind]
    rows = []
    for state in State:
        counts = [stats.by_state.get((state.value, kind), 0) for kind in kinds]
        cells = [
            f'<a href="{href("/admin/dashboard/sessions", {"state": state, "kind": kind})}">{n}</a>'
            if n
            else "0"
            for kind, n in zip(kinds, counts, strict=True)
        ]
        rows.append([_state(state), *cells, str(sum(counts))])
    scope = (
        "all sessions"
        if stats.complete
        else f"the newest {stats.scanned} sessions (older ones are not counted here)"
    )
    by_state = f"<h2>By state and kind</h2><p class=note>Over {esc(scope)}.</p>" + table(
        ["state", *kinds, "all"], rows, empty="No sessions."
    )
    due = stats.due
    # While a store from before the due summary's indexes is indexed, these two are read
    # from the most due sessions only.
    scope_of_due = "" if due.indexed else f" (of the {DUE_SCAN:,} most due)"
    held = ", ".join(held_text(a, c) for c, a in stats.held.items()) or "none"
    if stats.voids_held:
        held += f" and {stats.voids_held} void(s)"
    backlog = table(
        ["", ""],
        [
            ["unfinished (due set)", str(due.depth)],
            ["overdue", str(due.overdue)],
            ["oldest unfinished", f"{due.oldest_unfinished_seconds:.0f} s{scope_of_due}"],
            ["pending payments", f"{due.pending_payments}{scope_of_due}"],
            [
                f'<a href="{href("/admin/dashboard/failed")}">failed (dead letters)</a>',
                esc(", ".join(f"{k} {n}" for k, n in stats.failed.items())),
            ],
            [
                f'<a href="{href("/admin/dashboard/held")}">money held by failed sessions</a>',
                esc(f"{held} ({stats.held_sessions} sessions)"),
            ],
        ],
        empty="",
    )
    return (
        f"<div class=row><div>{by_state}</div><div><h2>Backlog</h2>{backlog}</div></div>"
        + _charts(activity)
    )


def _charts(activity: Activity) -> str:
    labels = [datetime.fromtimestamp(b.start, UTC).strftime("%H:%M") for b in activity.buckets]
    minutes = activity.seconds / 60
    buckets = activity.buckets
    throughput = bar_chart(
        f"sessions per {minutes:.0f} min (UTC)",
        labels,
        [
            Series("received", "#4c78a8", [b.received for b in buckets]),
            Series("reported", "#54a24b", [b.reported for b in buckets]),
            Series("failed", "#e45756", [b.failed for b in buckets]),
        ],
        unit="",
    )
    latency = bar_chart(
        "received to reported, seconds",
        labels,
        [
            Series("median", "#72b7b2", [b.latency_p50 for b in buckets]),
            Series("max", "#f58518", [b.latency_max for b in buckets]),
        ],
        unit="s",
    )
    received, reported, failed = activity.totals
    summary = (
        f"<p class=note>Last hour: {received} received, {reported} reported, {failed} failed "
        f"and still failed. Latency is sampled from up to {LATENCY_SAMPLE} reported sessions "
        "per bar.</p>"
    )
    return f"<h2>Last hour</h2>{summary}<div class=row>{throughput}{latency}</div>"


def _select(name: str, values: Sequence[str], chosen: str | None) -> str:
    options = ['<option value="">any</option>']
    for value in values:
        mark = " selected" if value == chosen else ""
        options.append(f'<option value="{esc(value)}"{mark}>{esc(value)}</option>')
    return f'<select name="{esc(name)}" aria-label="{esc(name)}">{"".join(options)}</select>'


def _text(name: str, value: object, placeholder: str) -> str:
    return (
        f'<input name="{esc(name)}" value="{esc(value)}" placeholder="{esc(placeholder)}" '
        f'aria-label="{esc(placeholder)}">'
    )


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


def sessions_body(filters: Filters, wanted_id: str | None, found: list[Session]) -> str:
    search = (
        '<form method="get" action="/admin/dashboard/sessions" class="box">'
        + _text("id", wanted_id, "session id")
        + _text("shop", filters.shop, "shop")
        + _select("state", [s.value for s in State], filters.state)
        + _select("kind", [k.value for k in Kind], filters.kind)
        + _text("error_contains", filters.error_contains, "error contains")
        + _text("since", _iso(filters.since), "since (ISO time)")
        + _text("until", _iso(filters.until), "until (ISO time)")
        + '<button type="submit">Search</button></form>'
    )
    rows = [
        [
            session_link(s.id),
            esc(s.shop),
            # Shopify's test mode, on every row: such a session moves no real money.
            esc(f"{s.kind} (test)" if s.test else s.kind),
            _state(s.state),
            _money(s),
            esc(when(s.created_at)),
            f'<span class="err">{esc(s.last_error or "")}</span>',
        ]
        for s in found
    ]
    headings = ["id", "shop", "kind", "state", "amount", "received (UTC)", "last error"]
    return search + table(headings, rows, empty="No session matches.")


def session_body(
    session: Session,
    held: Held | None,
    timeline: list[TimelineEvent],
    seen: Viewer,
    *,
    replayed: str | None,
) -> str:
    parts = []
    if replayed:
        parts.append(f'<p class="box flash">Replayed: it resumes at {esc(replayed)}.</p>')
    if session.state is State.FAILED:
        button = post_form("/admin/dashboard/replay", seen, {"id": session.id}, "Replay")
        parts.append(
            f'<div class="box warn"><b>Failed:</b> <span class="err">'
            f"{esc(session.last_error)}</span> {button}</div>"
        )
    fields = [["id", f"<code>{esc(session.id)}</code>"], ["amount", _money(session)]]
    for name in SESSION_FIELDS:
        value = getattr(session, name)
        cell = _state(value) if name == "state" else esc("-" if value is None else value)
        fields.append([esc(name), cell])
    if session.kind is Kind.PAYMENT:
        fields.append(["buyer sent to", esc(buyer_sent_to(session.redirect_url))])
    fields.append(["proposed_at", esc(session.proposed_at.isoformat())])
    for name in SESSION_TIMES:
        fields.append([esc(name), esc(when(getattr(session, name)))])
    fields.append(["money held", esc(held.describe() if held else "none")])
    parts.append(table(["field", "value"], fields, empty=""))
    events = [
        [
            esc(when(e.at)),
            esc(e.event),
            _state(e.state),
            esc("" if e.attempt is None else e.attempt),
            f'<span class="err">{esc(e.error or "")}</span>',
            esc(e.detail or ""),
        ]
        for e in timeline
    ]
    parts.append(f"<h2>Timeline ({len(timeline)} events)</h2>")
    headings = ["at (UTC)", "event", "state", "attempt", "error", "detail"]
    parts.append(table(headings, events, empty="No timeline."))
    return "".join(parts)


def _filter_fields(filters: Filters) -> dict[str, object]:
    return {
        "kind": filters.kind,
        "shop": filters.shop,
        "error_contains": filters.error_contains,
        "since": _iso(filters.since),
        "until": _iso(filters.until),
    }


def failed_body(filters: Filters, found: list[Session], seen: Viewer) -> str:
    search = (
        '<form method="get" action="/admin/dashboard/failed" class="box">'
        + _text("shop", filters.shop, "shop")
        + _select("kind", [k.value for k in Kind], filters.kind)
        + _text("error_contains", filters.error_contains, "error contains")
        + _text("since", _iso(filters.since), "failed since (ISO time)")
        + _text("until", _iso(filters.until), "failed until (ISO time)")
        + '<button type="submit">Filter</button> '
        + '<button type="submit" formaction="/admin/dashboard/bulk-replay">'
        + "Bulk replay… (dry run first)</button></form>"
    )
    rows = [
        [
            session_link(s.id),
            esc(s.shop),
            esc(s.kind),
            _money(s),
            esc(when(s.failed_at)),
            f'<span class="err">{esc(s.last_error)}</span>',
            post_form("/admin/dashboard/replay", seen, {"id": s.id}, "Replay"),
        ]
        for s in found
    ]
    headings = ["id", "shop", "kind", "amount", "failed at (UTC)", "last error", ""]
    return search + table(headings, rows, empty="No failed session matches.")


def bulk_preview_body(filters: Filters, results: list[Replayed], seen: Viewer) -> str:
    resumes = Counter(str(r.state) for r in results if r.state is not None)
    count = sum(resumes.values())
    where = ", ".join(f"{n} at {state}" for state, n in sorted(resumes.items())) or "none"
    parts = [
        f'<p class="box warn" id="dry-run-count">Dry run: <b>{count}</b> failed session(s) '
        f"would be replayed ({esc(where)}). Nothing has changed yet.</p>",
        '<p class="note">A session resuming at <i>settled</i> has its PSP answer stored: only '
        "Shopify is called again. One at <i>received</i> is settled with the PSP first. "
        "Sessions failing after the dry run are not included.</p>",
    ]
    if count:
        fields = {**_filter_fields(filters), "expected": count}
        parts.append(
            post_form("/admin/dashboard/bulk-replay", seen, fields, f"Replay {count} session(s)")
        )
    rows = [[session_link(r.session_id), esc(r.note)] for r in results]
    parts.append(table(["id", "dry run"], rows, empty="No failed session matches."))
    return "".join(parts)


def bulk_result_body(results: list[Replayed], expected: int | None) -> str:
    done = [r for r in results if r.state is not None]
    skipped = [r for r in results if r.state is None]
    parts = [
        f'<p class="box flash" id="bulk-result">Replayed <b>{len(done)}</b> session(s); '
        f"skipped {len(skipped)}"
        + (f" (the dry run counted {expected})" if expected is not None else "")
        + ".</p>"
    ]
    rows = [[session_link(r.session_id), esc(r.note)] for r in results]
    parts.append(table(["id", "result"], rows, empty="Nothing matched any more."))
    return "".join(parts)


def login_body(wanted: str, error: str | None) -> str:
    problem = f'<p class="err" role="alert">{esc(error)}</p>' if error else ""
    return (
        f"{problem}<form method='post' action='/admin/login' class='box'>"
        f"{hidden({'next': wanted})}"
        "<label>Admin token (<code>PAYHOOK_ADMIN_TOKEN</code>) "
        "<input type='password' name='token' autocomplete='current-password' autofocus "
        "required></label> <button type='submit'>Log in</button></form>"
    )
