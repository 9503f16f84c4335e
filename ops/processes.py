"""The long-running processes: web server, Celery worker, beat and Flower."""

from __future__ import annotations

from aiohttp import web

from config import Settings
from config.logging import configure_logging
from webhook.app import create_app
from webhook.tls import server_ssl_context
from workers.celery_app import create_celery
from workers.dispatch import QUEUE
from workers.tasks import SWEEP_QUEUE, register_tasks


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_context=server_ssl_context(settings),
        access_log=None,
        print=None,
    )


def worker(settings: Settings, *, concurrency: int | None = None) -> int:
    configure_logging(settings.log_level)
    app = create_celery(settings)
    register_tasks(app, settings)
    # The exit code matters: a supervisor restarts a worker that stopped on an error.
    return exit_code(
        app.start(
            [
                "worker",
                "--queues",
                f"{QUEUE},{SWEEP_QUEUE}",
                "--concurrency",
                str(concurrency or settings.worker_concurrency),
                "--loglevel",
                settings.log_level,
                "--optimization",
                "fair",
                "--without-gossip",
                "--without-mingle",
                "--task-events",
            ]
        )
    )


def beat(settings: Settings) -> int:
    configure_logging(settings.log_level)
    app = create_celery(settings)
    register_tasks(app, settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return exit_code(
        app.start(
            [
                "beat",
                "--schedule",
                str(settings.state_dir / "celerybeat-schedule"),
                "--loglevel",
                settings.log_level,
            ]
        )
    )


def flower(settings: Settings, *, port: int) -> int:
    app = create_celery(settings)
    register_tasks(app, settings)
    return exit_code(app.start(["flower", f"--port={port}", "--address=127.0.0.1"]))


def exit_code(code: object) -> int:
    """Celery's `start` returns the command's exit code, or None for a clean exit."""
    return code if isinstance(code, int) else 0
