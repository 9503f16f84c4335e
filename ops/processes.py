"""The long-running processes: web server, Celery worker(s), beat and Flower."""

from __future__ import annotations

import logging
import socket
import sys

from aiohttp import web

from config import Settings
from config.event_loop import new_event_loop
from config.logging import configure_logging
from config.tracing import build_tracer
from transport.celery_app import create_celery
from transport.messages import SWEEP_QUEUE, WEBHOOK_QUEUE
from webhook.app import create_app
from webhook.auth import ShopifyAuth
from webhook.signing import secret_problem
from webhook.tls import server_ssl_context

# Celery's pool runs only sweep tasks and Shopify's webhooks: a webhook that takes long (an
# uninstall failing many sessions) leaves a thread for the sweep.
SWEEP_THREADS = 3


def refuse_a_separate_broker(settings: Settings, command: str) -> None:
    """Stop `payhook COMMAND` before it starts when its broker is not the session Redis: it
    would run, answer health checks, and never settle a session."""
    problem = settings.broker_problem
    if problem is not None:
        sys.exit(f"payhook {command}: {problem}")


def serve(settings: Settings, *, reuse_port: bool = False) -> None:
    refuse_a_separate_broker(settings, "serve")
    configure_logging(settings.log_level)
    if not ShopifyAuth.from_settings(settings).enforced:
        logging.getLogger("payhook.webhook").warning(
            "session routes accept any client: set PAYHOOK_TLS_CLIENT_CA_FILE (mTLS here) "
            "or PAYHOOK_TRUSTED_PROXIES (mTLS at a proxy) before Shopify points at them"
        )
    if settings.operator_port is None and settings.admin_token is None:
        # The Shopify-facing listener shows metrics to the admin token only.
        logging.getLogger("payhook.webhook").warning(
            "metrics and readiness detail are served nowhere: set PAYHOOK_OPERATOR_PORT "
            "(the operator listener) or PAYHOOK_ADMIN_TOKEN (a bearer token on PAYHOOK_PORT)"
        )
    problem = secret_problem(settings.simulator_webhook_secret)
    # Unset is fine (callbacks are refused); a public or short secret lets anyone sign one.
    if settings.simulator_webhook_secret is not None and problem is not None:
        sys.exit(
            f"payhook serve: {problem}; anyone could sign a payment approval with it. "
            "Set a random secret of 32 characters or more (`payhook dev` makes its own)."
        )
    web.run_app(
        # After configure_logging: tracing adds the trace id to its handler.
        create_app(settings, tracer=build_tracer(settings, "payhook-web")),
        host=settings.host,
        port=settings.port,
        ssl_context=server_ssl_context(settings),
        access_log=None,
        print=None,
        reuse_port=reuse_port or None,
        # uvloop: the event loop's own cost per socket read, write and callback was a fifth
        # of the intake's CPU (docs/performance.md).
        loop=new_event_loop(),
    )


def worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    processes: int | None = None,
    index: int | None = None,
) -> int:
    """`payhook worker`: one Celery worker process, or `processes` of them supervised here."""
    # Imported here, not at the top: `payhook serve` needs none of the worker's code, and
    # leaving it out keeps the web process smaller (docs/performance.md).
    from ops.supervisor import supervise
    from workers.metrics import MetricsServer
    from workers.tasks import manage_runtime, register_tasks

    refuse_a_separate_broker(settings, "worker")
    configure_logging(settings.log_level)
    count = processes or settings.worker_processes
    slots = concurrency or settings.worker_concurrency
    if count > 1 and index is None:
        return supervise(count, concurrency=slots)
    settings = settings.model_copy(update={"worker_concurrency": slots})
    app = create_celery(settings)
    holder = register_tasks(app, settings, build_tracer(settings, "payhook-worker"))
    metrics = None
    if settings.worker_metrics_port is not None:
        # One listener per process: the supervisor's children take consecutive ports.
        port = settings.worker_metrics_port + (index or 0)
        metrics = MetricsServer(holder.metrics, settings.worker_metrics_address, port)
    manage_runtime(holder, metrics)
    name = f"payhook{'' if index is None else f'-{index}'}@{socket.gethostname()}"
    arguments = [
        "worker",
        "--hostname",
        name,
        # Sessions are taken by the session consumer on the event loop (workers.consumer);
        # Celery consumes only the sweeper's queue and Shopify's webhooks, whose tasks wait
        # for the same loop.
        "--queues",
        f"{SWEEP_QUEUE},{WEBHOOK_QUEUE}",
        "--pool",
        "threads",
        "--concurrency",
        str(SWEEP_THREADS),
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if settings.worker_task_events:
        arguments.append("--task-events")
    # The exit code matters: a supervisor restarts a worker that stopped on an error.
    return exit_code(app.start(arguments))


def beat(settings: Settings) -> int:
    """`payhook beat`: run it on several hosts; one at a time sends (transport.beat)."""
    from transport.beat import locked_scheduler
    from workers.tasks import register_tasks

    refuse_a_separate_broker(settings, "beat")
    configure_logging(settings.log_level)
    app = create_celery(settings)
    register_tasks(app, settings)
    # A class, not a dotted path: Celery takes either, and this one carries the lock.
    app.conf.beat_scheduler = locked_scheduler(settings)
    return exit_code(app.start(["beat", "--loglevel", settings.log_level]))


def flower(settings: Settings, *, port: int) -> int:
    """Flower shows every task and can revoke them and resize pools: off localhost it is
    for its users only."""
    from workers.tasks import register_tasks

    users = settings.flower_basic_auth
    if users is None and not settings.flower_on_loopback:
        print(
            f"payhook flower: refusing to listen on {settings.flower_address} without "
            "authentication; set PAYHOOK_FLOWER_BASIC_AUTH=user:password (or keep "
            "PAYHOOK_FLOWER_ADDRESS on 127.0.0.1 behind your own authenticating proxy)",
            file=sys.stderr,
        )
        return 2
    app = create_celery(settings)
    register_tasks(app, settings)
    arguments = ["flower", f"--port={port}", f"--address={settings.flower_address}"]
    if users is not None:
        # In-process: the password reaches Flower's options, never this process's argv.
        arguments.append(f"--basic-auth={users.get_secret_value()}")
    return exit_code(app.start(arguments))


def exit_code(code: object) -> int:
    """Celery's `start` returns the command's exit code, or None for a clean exit."""
    return code if isinstance(code, int) else 0
