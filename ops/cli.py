"""The `payhook` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from config import Settings
from readouts.query import SessionFilter
from sessions.models import Kind
from sessions.states import State

# The connectors with a sandbox fake (`sandbox.psp`); listed here to keep startup light.
PSP_FAKES = ("http", "ledyer", "aplazame", "purchase", "bigcommerce")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payhook", description="Shopify payments app back end: sessions in, settlements out."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the web server (session endpoints, health; metrics and readiness detail on "
        "the operator listener, PAYHOOK_OPERATOR_PORT)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="listen with SO_REUSEPORT, so that several `payhook serve` share PAYHOOK_PORT "
        "and the kernel spreads connections across them (one process per core)",
    )
    worker = commands.add_parser("worker", help="run a Celery worker that settles sessions")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="sessions in flight per process (default: PAYHOOK_WORKER_CONCURRENCY)",
    )
    worker.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes to run and supervise (default: PAYHOOK_WORKER_PROCESSES)",
    )
    # Set by `--processes` for each child it starts.
    worker.add_argument("--index", type=int, default=None, help=argparse.SUPPRESS)
    commands.add_parser("beat", help="run the scheduler that drives the sweeper")
    flower = commands.add_parser("flower", help="run Flower, the live view of the workers")
    flower.add_argument(
        "--port", type=int, default=None, help="default: PAYHOOK_FLOWER_PORT (5555)"
    )

    dev = commands.add_parser(
        "dev",
        help="run everything locally: Redis, web and dashboard, worker, beat, Flower and the "
        "Shopify sandbox",
    )
    dev.add_argument(
        "--demo",
        type=int,
        default=0,
        metavar="N",
        help="send N capture sessions once everything is up",
    )
    dev.add_argument("--exit", action="store_true", help="stop after the demo instead of serving")
    dev.add_argument("--sandbox-port", type=int, default=8090)
    dev.add_argument(
        "--connector",
        choices=["simulator", *PSP_FAKES],
        default=None,
        help="settle with this PSP connector against its sandbox fake (default: the simulator)",
    )
    dev.add_argument("--psp-port", type=int, default=8095, help="port of the PSP fake")
    dev.add_argument(
        "--flower-port",
        type=int,
        default=None,
        help="port of Flower (default: PAYHOOK_FLOWER_PORT)",
    )

    demo = commands.add_parser("demo", help="send capture sessions to a running payhook")
    demo.add_argument("count", type=int)
    demo.add_argument("--app-url", default=None, help="default: http://HOST:PORT from settings")
    demo.add_argument("--sandbox-url", default="http://127.0.0.1:8090")
    demo.add_argument("--concurrency", type=int, default=16)

    sandbox = commands.add_parser("sandbox", help="run the Shopify Payments Apps sandbox peer")
    sandbox.add_argument("--port", type=int, default=8090)
    sandbox.add_argument(
        "--confirmation-callback-url",
        default=None,
        help="where confirmation requests go after paymentSessionConfirm (the extension's "
        "confirmation_callback_url); default: PAYHOOK_PUBLIC_URL/payment_confirmations",
    )
    # Hidden from the command list: `payhook dev --connector` starts it for you.
    psp = commands.add_parser("psp-sandbox", description="run a PSP connector's sandbox fake")
    psp.add_argument("name", choices=PSP_FAKES)
    psp.add_argument("--port", type=int, default=8095)
    psp.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="answer every capture, refund and void this late (default: at once)",
    )
    psp.add_argument(
        "--read-latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="answer every read this late (default: at once)",
    )

    sessions = commands.add_parser("sessions", help="inspect sessions")
    which = sessions.add_subparsers(dest="action", required=True)
    listing = which.add_parser("list", help="newest first; failed sessions oldest failure first")
    _add_filters(listing)
    listing.add_argument("--state", choices=[s.value for s in State], default=None)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    show = which.add_parser("show", help="one session with its timeline")
    show.add_argument("session_id")
    show.add_argument("--json", action="store_true")
    stats = which.add_parser(
        "stats", help="counts by state and kind, failures, backlog, money held by failed ones"
    )
    stats.add_argument("--json", action="store_true")
    flying = which.add_parser("in-flight", help="the sessions each worker is running now")
    flying.add_argument("--json", action="store_true")
    which.add_parser(
        "reindex",
        help="build the due summary's indexes again (after an older version ran alongside)",
    )
    release = which.add_parser(
        "release",
        help="give back the money a failed session holds, once the PSP shows nothing applied",
    )
    release.add_argument("session_id")
    release.add_argument(
        "--force", action="store_true", help="release though the PSP cannot be asked"
    )

    replay = commands.add_parser("replay", help="resume failed sessions at their recovery point")
    replay.add_argument("session_ids", nargs="*", metavar="SESSION_ID")
    replay.add_argument("--failed", action="store_true", help="every failed session matching")
    _add_filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    replay.add_argument("--rate", type=float, default=20.0, help="sessions per second")
    replay.add_argument("--limit", type=int, default=10_000)

    reconcile = commands.add_parser(
        "reconcile",
        help="compare what Shopify was told, and the ledger's books, with what the PSP did; "
        "exit 1 on any mismatch, 3 when none but something could not be checked",
    )
    reconcile.add_argument("--shop", default=None)
    reconcile.add_argument(
        "--since", type=_timestamp, default=None, metavar="ISO8601", help="created at or after"
    )
    reconcile.add_argument(
        "--until", type=_timestamp, default=None, metavar="ISO8601", help="created at or before"
    )
    reconcile.add_argument("--json", action="store_true")
    reconcile.add_argument(
        "--rate", type=_positive, default=10.0, help="PSP calls per second (default 10)"
    )

    hooks = commands.add_parser("webhooks", help="Shopify's webhooks and what became of them")
    hook_actions = hooks.add_subparsers(dest="action", required=True)
    hook_list = hook_actions.add_parser("list", help="newest first; failed ones oldest first")
    hook_list.add_argument(
        "--state", choices=["received", "retrying", "done", "failed"], default=None
    )
    hook_list.add_argument("--shop", default=None)
    hook_list.add_argument("--limit", type=int, default=50)
    hook_list.add_argument("--json", action="store_true")
    hook_show = hook_actions.add_parser("show", help="one webhook with its events")
    hook_show.add_argument("webhook_id")
    hook_show.add_argument("--json", action="store_true")
    hook_replay = hook_actions.add_parser("replay", help="queue failed webhooks again")
    hook_replay.add_argument("webhook_ids", nargs="+", metavar="WEBHOOK_ID")
    hook_replay.add_argument("--dry-run", action="store_true")
    hook_replay.add_argument(
        "--again",
        action="store_true",
        help="also a done app/uninstalled or shop/redact: do its work again (erase what it "
        "kept then, a session whose money has been released since)",
    )
    hook_report = hook_actions.add_parser(
        "report", help="the report a customers/data_request produced, as JSON"
    )
    hook_report.add_argument("webhook_id")

    commands.add_parser("doctor", help="check Redis durability settings and reachability")

    shops = commands.add_parser("shops", help="per-shop Shopify access tokens")
    shop_actions = shops.add_subparsers(dest="action", required=True)
    add = shop_actions.add_parser("add", help="store a shop's offline access token")
    add.add_argument("shop")
    add.add_argument("--token", default=None, help="default: read without echo from the tty")
    listing = shop_actions.add_parser(
        "list", help="each shop: its token (never shown), ready at Shopify, its onboarding"
    )
    listing.add_argument("--json", action="store_true")
    remove = shop_actions.add_parser("remove", help="forget a shop's token and onboarding")
    remove.add_argument("shop")
    configure = shop_actions.add_parser(
        "configure",
        help="tell Shopify whether the shop's payment method is ready (paymentsAppConfigure); "
        "exit 0 configured, 1 refused or failed, 3 queued for the workers to retry",
    )
    configure.add_argument("shop")
    configure.add_argument(
        "--handle",
        default=None,
        metavar="H",
        help="the merchant's handle at the provider (externalHandle; default: the last one "
        "asked, else the shop's domain)",
    )
    readiness = configure.add_mutually_exclusive_group(required=True)
    readiness.add_argument("--ready", dest="ready", action="store_true")
    readiness.add_argument("--not-ready", dest="ready", action="store_false")
    shop_actions.add_parser(
        "rotate", help="re-encrypt every stored token under the first PAYHOOK_TOKEN_KEYS key"
    )
    shop_actions.add_parser("new-key", help="print a new key for PAYHOOK_TOKEN_KEYS")
    return parser


def _timestamp(text: str) -> float:
    """ISO 8601 (`2026-11-23`, `2026-11-23T10:00:00Z`) to epoch seconds; naive means UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=[k.value for k in Kind], default=None)
    parser.add_argument("--shop", default=None)
    parser.add_argument("--since", type=_timestamp, default=None, metavar="ISO8601")
    parser.add_argument("--until", type=_timestamp, default=None, metavar="ISO8601")
    parser.add_argument("--error-contains", default=None, metavar="TEXT")


def _filter(args: argparse.Namespace, state: State | None) -> SessionFilter:
    return SessionFilter(
        state=state,
        kind=args.kind,
        shop=args.shop,
        since=args.since,
        until=args.until,
        error_contains=args.error_contains,
        limit=args.limit,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    command = args.command
    if command == "serve":
        from ops.processes import serve

        serve(settings, reuse_port=args.reuse_port)
    elif command == "worker":
        from ops.processes import worker

        return worker(
            settings, concurrency=args.concurrency, processes=args.processes, index=args.index
        )
    elif command == "beat":
        from ops.processes import beat

        return beat(settings)
    elif command == "flower":
        from ops.processes import flower

        port = settings.flower_port if args.port is None else args.port
        return flower(settings, port=port)
    elif command == "dev":
        from ops.dev import run_dev

        return run_dev(
            settings,
            demo=args.demo,
            exit_after_demo=args.exit,
            sandbox_port=args.sandbox_port,
            connector=args.connector,
            psp_port=args.psp_port,
            flower_port=settings.flower_port if args.flower_port is None else args.flower_port,
        )
    elif command == "demo":
        from ops.demo import run_demo

        app_url = args.app_url or f"http://{settings.host}:{settings.port}"
        result = asyncio.run(
            run_demo(app_url, args.sandbox_url, args.count, concurrency=args.concurrency)
        )
        return 0 if result.complete else 1
    elif command == "sandbox":
        from ops.dev import serve_sandbox
        from sandbox.api_versions import UnknownApiVersion, schema_file

        try:
            # It serves the schema of the version payhook calls, and has a file per version.
            schema_file(settings.shopify_api_version)
        except UnknownApiVersion as exc:
            print(f"payhook sandbox: {exc}", file=sys.stderr)
            return 2

        secret = settings.simulator_webhook_secret
        key, app_secret = settings.shopify_api_key, settings.shopify_api_secret
        api_secret = app_secret.get_secret_value() if app_secret else None
        asyncio.run(
            serve_sandbox(
                args.port,
                secret.get_secret_value() if secret else None,
                # The app's credentials, when given, make the sandbox able to install it.
                {key: api_secret} if key and api_secret else None,
                confirmation_callback_url=args.confirmation_callback_url
                or f"{settings.public_base_url}/payment_confirmations",
                # Shopify's webhooks go to payhook's public URL, signed with the app's secret.
                webhook_secret=api_secret,
                app_url=settings.public_base_url,
                api_version=settings.shopify_api_version,
            )
        )
    elif command == "psp-sandbox":
        from ops.dev import serve_psp_sandbox

        asyncio.run(
            serve_psp_sandbox(
                args.name, args.port, latency=args.latency, read_latency=args.read_latency
            )
        )
    elif command == "sessions":
        from ops.inspect import list_sessions, show_session

        if args.action == "list":
            state = State(args.state) if args.state else None
            return asyncio.run(list_sessions(settings, _filter(args, state), as_json=args.json))
        if args.action == "in-flight":
            from ops.in_flight import show_in_flight

            return show_in_flight(settings, as_json=args.json)
        if args.action == "stats":
            from ops.stats import show_stats

            return asyncio.run(show_stats(settings, as_json=args.json))
        if args.action == "reindex":
            from ops.reindex import reindex

            return asyncio.run(reindex(settings))
        if args.action == "release":
            from ops.release import release

            return asyncio.run(release(settings, args.session_id, force=args.force))
        return asyncio.run(show_session(settings, args.session_id, as_json=args.json))
    elif command == "replay":
        from ops.replay import run_replay

        if bool(args.session_ids) == args.failed:
            print("payhook replay: give SESSION_IDs or --failed (with filters)", file=sys.stderr)
            return 2
        wanted = _filter(args, State.FAILED) if args.failed else None
        return asyncio.run(
            run_replay(settings, args.session_ids, wanted, dry_run=args.dry_run, rate=args.rate)
        )
    elif command == "reconcile":
        from ops.reconcile import Window, reconcile

        if args.since is not None and args.until is not None and args.since > args.until:
            print("payhook reconcile: --since is after --until", file=sys.stderr)
            return 2
        window = Window(since=args.since, until=args.until, shop=args.shop)
        return asyncio.run(reconcile(settings, window, as_json=args.json, rate=args.rate))
    elif command == "webhooks":
        from ops import webhooks

        if args.action == "list":
            return asyncio.run(
                webhooks.list_webhooks(
                    settings, state=args.state, shop=args.shop, limit=args.limit, as_json=args.json
                )
            )
        if args.action == "show":
            return asyncio.run(webhooks.show_webhook(settings, args.webhook_id, as_json=args.json))
        if args.action == "replay":
            return asyncio.run(
                webhooks.replay(settings, args.webhook_ids, dry_run=args.dry_run, again=args.again)
            )
        return asyncio.run(webhooks.report(settings, args.webhook_id))
    elif command == "doctor":
        from ops.doctor import run_doctor

        return asyncio.run(run_doctor(settings))
    elif command == "shops":
        from ops.inspect import shops

        if args.action == "new-key":
            from cryptography.fernet import Fernet

            print(Fernet.generate_key().decode())
            return 0
        if args.action in ("configure", "list"):
            from ops.onboarding import configure_shop, list_shops

            if args.action == "list":
                return asyncio.run(list_shops(settings, as_json=args.json))
            return asyncio.run(
                configure_shop(settings, args.shop, handle=args.handle, ready=args.ready)
            )
        token = None
        if args.action == "add":
            token = args.token or getpass.getpass(f"access token for {args.shop}: ")
        return asyncio.run(shops(settings, args.action, getattr(args, "shop", None), token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
