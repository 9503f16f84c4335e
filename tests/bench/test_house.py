"""`python -m bench.house`'s walk on its real peers (a redis-server, the sandbox Shopify, the
web app and the worker runtime in this process), so the picture the closing notes quote keeps
working: one capture reported, its stays from the intake to the report, its Redis commands."""

from __future__ import annotations

from pathlib import Path

from bench.house import WEB_THREAD, commands_by_role, walk


async def test_the_walk_follows_one_capture_from_its_post_to_its_report(tmp_path: Path) -> None:
    walked = await walk(tmp_path)
    assert walked.state == "reported"
    web = [stay.module for stay in walked.stays if stay.thread == WEB_THREAD]
    worker = [stay.module for stay in walked.stays if stay.thread != WEB_THREAD]
    assert {"webhook.sessions", "sessions.intake", "sessions.store"} <= set(web)
    assert not any(module.startswith("workers.") for module in web)
    assert {
        "workers.consumer",
        "workers.lifecycle.runner",
        "workers.lifecycle.decide",
        "workers.connectors.simulator",
        "workers.shopify.gateway",
    } <= set(worker)
    # The peers and the bench itself are not rooms of the house.
    assert not any(m.split(".")[0] in ("sandbox", "bench", "tests") for m in web + worker)
    # The web's stays come first, and consecutive calls in one module make one stay.
    assert walked.stays[0].thread == WEB_THREAD
    pairs = list(zip(walked.stays, walked.stays[1:], strict=False))
    assert all((a.thread, a.module) != (b.thread, b.module) for a, b in pairs)
    roles = commands_by_role(walked)
    assert roles["web"]["sessions.store._CREATE"] == 1
    assert roles["worker"]["sessions.claims._CLAIM"] == 1
    assert roles["lua"]  # what the scripts ran is counted too
