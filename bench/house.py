"""The house and the walk: payhook's rooms, the arrows between them, and the rooms one
session stays in on its way from intake to `reported`.

    python -m bench.house [--brief] [--no-walk]

1. Rooms: each package and sub-package, with its modules, lines and largest module.
2. Arrows: room to room imports (module pairs), and the ones against the layers of
   `bench.layers`, the order `tests/test_layers.py` guards.
3. The walk: a redis-server, the sandbox Shopify, the web app (`create_app`) and the worker
   runtime with its session consumer and the simulator PSP, all in this process. After a
   warm-up capture, one capture session is sent; from its POST until its run ends
   (the session `reported`), a profile hook on the web's thread and on the worker's loop
   thread records the module of every function of the house called (a coroutine counts
   when it starts, not when it is resumed; sandbox and bench frames are left out);
   consecutive calls in one module fold into a stay, the web's stays then the worker's.
   Redis MONITOR records the commands meanwhile, until the run's acknowledgement is
   written: those the clients sent, each script named by the module constant that holds
   it, and those the scripts ran.
Everything talks to 127.0.0.1 and stops by itself within a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.layers import (
    KNOWN_UPWARD,
    LAYERS,
    ROOT,
    SANDBOX,
    SUBLAYERS,
    Arrow,
    Module,
    arrows,
    modules,
    rank,
    upward,
    wrong_way,
)

SHOP = "house-shop.myshopify.com"
TOKEN = "shpat_house"  # the sandbox accepts any token
BOUND_SECONDS = 50.0
# After the run ends: the consumer's acknowledgement lingers 5 ms for company.
ACK_SETTLE_SECONDS = 0.2
# Rooms of the walk: the house, without the peers it talks to.
NOT_WALKED = (SANDBOX, "bench", "tests")
WEB_THREAD = "MainThread"


# -- rooms and arrows ----------------------------------------------------------------------


def lines_of(module: Module) -> int:
    return len(module.path.read_text().splitlines())


def room_order(room: str) -> tuple[int, str]:
    place = rank(room)
    return (place[0] if place is not None else len(LAYERS), room)


def print_rooms(house: list[Module]) -> None:
    by_room: dict[str, list[Module]] = defaultdict(list)
    for module in house:
        by_room[module.room].append(module)
    print("rooms (modules, lines, largest module)")
    for room in sorted(by_room, key=room_order):
        inside = by_room[room]
        sizes = {module.name: lines_of(module) for module in inside}
        largest = max(sizes, key=lambda name: sizes[name])
        print(
            f"  {room:<20} {len(inside):>3} {sum(sizes.values()):>7,}   "
            f"{largest} ({sizes[largest]})"
        )
    total = sum(lines_of(module) for module in house)
    print(f"  {len(by_room)} rooms, {len(house)} modules, {total:,} lines")


def print_arrows(house: list[Module], found: list[Arrow]) -> None:
    room = {module.name: module.room for module in house}
    between: dict[str, Counter[str]] = defaultdict(Counter)
    for pair in {arrow.pair for arrow in found}:
        low, high = room.get(pair[0], pair[0]), room.get(pair[1], pair[1])
        if low != high:
            between[low][high] += 1
    print("arrows between rooms (module pairs)")
    for low in sorted(between, key=room_order):
        targets = [f"{t} {between[low][t]}," for t in sorted(between[low], key=room_order)]
        head = f"  {low:<20} → "
        for line in _wrapped(targets, 100 - len(head)):
            print(head + line)
            head = " " * len(head)
    print("layers, bottom to top (bench.layers):")
    for line in _wrapped(order_text(house).split(" "), 96):
        print(f"  {line}")
    known = sorted({a.pair for a in found if upward(a) and a.pair in KNOWN_UPWARD})
    against = sorted({a.pair for a in wrong_way(found)})
    print(f"upward or forbidden arrows: {len(known) + len(against)} ({len(known)} known)")
    for low, high in known:
        print(f"  ↑ {low} → {high}, known:")
        for line in _wrapped(KNOWN_UPWARD[(low, high)].split(), 94):
            print(f"      {line}")
    for low, high in against:
        print(f"  ✗ {low} → {high}")
    outward = sorted(
        {a.pair for a in found if a.importer.split(".")[0] == SANDBOX}
        - {a.pair for a in found if a.imported.split(".")[0] == SANDBOX}
    )
    print("sandbox → house (allowed: bench.layers.SANDBOX_LEAVES):")
    for line in _wrapped((f"{a} → {b}," for a, b in outward), 96):
        print(f"  {line}")


def order_text(house: list[Module]) -> str:
    present = {module.top for module in house}
    shown = []
    for top in LAYERS:
        if top not in present:
            continue
        inner = SUBLAYERS.get(top)
        if inner is None:
            shown.append(top)
            continue
        steps = [
            ", ".join("the rest" if p == top else p.removeprefix(top + ".") for p in prefixes)
            for prefixes in inner
        ]
        shown.append(f"{top} ({' | '.join(steps)})")
    absent = [top for top in LAYERS if top not in present]
    return " < ".join(shown) + (f"; not there yet: {', '.join(absent)}" if absent else "")


# -- the walk ------------------------------------------------------------------------------


# A frame of these can be resumed: its later `call` events are not calls.
RESUMABLE = inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


@dataclass
class Recorder:
    """A profile hook: the module of every call into the house, on whichever thread.

    A coroutine is counted when it starts, not each time it is resumed: whether an await
    suspends depends on whether Redis had answered yet, which would make the walk differ
    from run to run."""

    root: Path
    calls: list[tuple[str, str]] = field(default_factory=list)
    _names: dict[str, str | None] = field(default_factory=dict)
    # Held so that an id is never reused while recording.
    _started: dict[int, FrameType] = field(default_factory=dict)

    def module_of(self, filename: str) -> str | None:
        if filename not in self._names:
            self._names[filename] = _module_name(self.root, filename)
        return self._names[filename]

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = self.module_of(frame.f_code.co_filename)
        if module is None:
            return
        if frame.f_code.co_flags & RESUMABLE:
            if id(frame) in self._started:
                return
            self._started[id(frame)] = frame
        self.calls.append((threading.current_thread().name, module))

    def legs(self) -> list[Stay]:
        """The web's stays, then the worker's: each thread's calls folded on their own, so
        that which thread ran first at a moment both could does not change the walk."""
        web = [(t, m, 1) for t, m in self.calls if t == WEB_THREAD]
        worker = [(t, m, 1) for t, m in self.calls if t != WEB_THREAD]
        return stays_of(web) + stays_of(worker)


def _module_name(root: Path, filename: str) -> str | None:
    path = Path(filename)
    if not path.is_relative_to(root) or path.suffix != ".py":
        return None
    parts = path.relative_to(root).with_suffix("").parts
    if len(parts) < 2 or parts[0] in NOT_WALKED or not (root / parts[0] / "__init__.py").exists():
        return None
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@dataclass(frozen=True)
class Stay:
    thread: str
    module: str
    calls: int


def stays_of(calls: Iterable[tuple[str, str, int]]) -> list[Stay]:
    """(thread, where, calls) in the order they came, consecutive ones of the same thread
    and place folded into one stay."""
    found: list[Stay] = []
    for thread, where, count in calls:
        if found and (found[-1].thread, found[-1].module) == (thread, where):
            found[-1] = Stay(thread, where, found[-1].calls + count)
        else:
            found.append(Stay(thread, where, count))
    return found


class RunEnds:
    """The consumer's task events: tells the walk when a session's run has ended, and
    takes the profile hook off the loop's thread at that moment."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self.profiled: str | None = None

    def expect(self, session_id: str) -> asyncio.Future[str]:
        self._waiting[session_id] = self._loop.create_future()
        return self._waiting[session_id]

    def started(self, delivery: Any) -> None:
        return None

    def ended(self, delivery: Any, result: str, runtime: float) -> None:
        if delivery.session_id == self.profiled:
            sys.setprofile(None)
        future = self._waiting.get(delivery.session_id)
        if future is not None:
            self._loop.call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future[str], result: str) -> None:
    if not future.done():
        future.set_result(result)


@dataclass
class Walked:
    stays: list[Stay]
    state: str
    commands: list[dict[str, Any]]
    clients: dict[str, str]
    seconds: float


async def walk(state_dir: Path) -> Walked:
    # Imported here: the rooms and arrows need none of the house loaded.
    import aiohttp
    from aiohttp import web
    from redis.asyncio import Redis

    from config import Settings
    from ops.redis_server import LocalRedis, free_port
    from sandbox.client import SandboxShopifyClient
    from sandbox.shopify import start_shopify_sandbox
    from sandbox.shopify_side import build_capture_body, post_session, send_capture_session
    from sessions.keys import session_key
    from sessions.ledger import Book
    from sessions.ledger_store import LedgerStore
    from transport.celery_app import create_celery
    from transport.messages import CeleryHandoff
    from webhook.app import create_app
    from workers.runtime import RuntimeHolder

    redis_server = LocalRedis(state_dir / "redis").start()
    sandbox = await start_shopify_sandbox("127.0.0.1", 0)
    settings = Settings(
        redis_url=redis_server.url,
        shopify_graphql_url=sandbox.graphql_url_template,
        shopify_access_token=TOKEN,
        connector="simulator",
        state_dir=state_dir,
    )
    runner = web.AppRunner(create_app(settings))
    holder = RuntimeHolder(settings, CeleryHandoff(create_celery(settings)))
    own = Redis.from_url(redis_server.url, client_name="bench-house")
    try:
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        app_url = f"http://127.0.0.1:{port}"
        runtime = await asyncio.to_thread(holder.get)
        ends = RunEnds(asyncio.get_running_loop())
        await asyncio.to_thread(runtime.consume, ends)
        async with aiohttp.ClientSession() as http:
            shopify = SandboxShopifyClient(sandbox.url, http)
            # Each capture is of a payment payhook knows, its book open as a payment
            # session leaves it (bench.drain does the same): the common path, with no
            # look-up at the PSP first.
            ledger = LedgerStore(own)
            for payment_id in ("pay-warm", "pay-walk"):
                await ledger.open(payment_id, Book(currency="EUR", authorized=10_000))
            # Warm-up: every pool, script and import the walk would otherwise pay for.
            warm_id = f"warm-{time.time_ns()}"
            warm_end = ends.expect(warm_id)
            await send_capture_session(
                http,
                app_url=app_url,
                sandbox=shopify,
                shop=SHOP,
                session_id=warm_id,
                payment_id="pay-warm",
                amount="10.00",
                currency="EUR",
            )
            await warm_end
            await asyncio.sleep(ACK_SETTLE_SECONDS)

            body = build_capture_body(payment_id="pay-walk", amount="49.99", currency="EUR")
            session_id = str(body["id"])
            key = session_key(session_id)
            await shopify.register([str(body["gid"])])
            recorder = Recorder(ROOT)
            ends.profiled = session_id
            end = ends.expect(session_id)
            commands: list[dict[str, Any]] = []
            watching = asyncio.Event()
            monitor = asyncio.create_task(_monitor(redis_server.url, commands, watching))
            await watching.wait()
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(_profile(recorder), runtime.loop)
            )
            started = time.perf_counter()
            sys.setprofile(recorder)
            try:
                status, _ = await post_session(
                    http,
                    url=f"{app_url}/capture_sessions",
                    body=body,
                    shop=SHOP,
                    api_version=settings.shopify_api_version,
                )
                await end
            finally:
                sys.setprofile(None)
            seconds = time.perf_counter() - started
            await asyncio.sleep(ACK_SETTLE_SECONDS)
            monitor.cancel()
            with suppress(asyncio.CancelledError):
                await monitor
            if status != 201:
                raise RuntimeError(f"intake answered {status}")
            reached = await own.hget(key, "state")
            clients = await own.client_list()
        return Walked(
            stays=recorder.legs(),
            state=reached.decode() if isinstance(reached, bytes) else str(reached),
            commands=commands,
            clients={str(c["addr"]).rpartition(":")[2]: str(c["name"]) for c in clients},
            seconds=seconds,
        )
    finally:
        await own.aclose()
        await asyncio.to_thread(holder.close)
        await runner.cleanup()
        await sandbox.close()
        redis_server.stop()


async def _profile(recorder: Recorder) -> None:
    """On the worker's loop thread: the hook, from here on."""
    sys.setprofile(recorder)


async def _monitor(url: str, into: list[dict[str, Any]], watching: asyncio.Event) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url, client_name="bench-house-monitor")
    try:
        async with client.monitor() as monitor:
            watching.set()
            while True:
                into.append(dict(await monitor.next_command()))
    finally:
        await client.aclose()


def role_of(command: dict[str, Any], clients: dict[str, str]) -> str:
    if command["client_type"] == "lua":
        return "lua"
    name = clients.get(str(command["client_port"]), "")
    if name == "payhook-web":
        return "web"
    if name.startswith("payhook-worker"):
        return "worker"
    return name or "other"


def print_walk(walked: Walked, house: list[Module], *, brief: bool) -> None:
    room = {module.name: module.room for module in house}
    stays = walked.stays
    by_room: dict[str, list[Stay]] = defaultdict(list)
    for stay in stays:
        by_room[room.get(stay.module, stay.module)].append(stay)
    in_rooms = stays_of((s.thread, room.get(s.module, s.module), s.calls) for s in stays)
    web = sum(1 for stay in stays if stay.thread == WEB_THREAD)
    print(
        f"the walk: one capture session from its POST to the end of its run "
        f"({walked.seconds * 1000:.0f} ms, profiled): {walked.state}"
    )
    print(
        f"  {len(stays)} stays (web {web}, worker {len(stays) - web}), "
        f"{sum(s.calls for s in stays):,} calls; {len({s.module for s in stays})} modules "
        f"in {len(by_room)} rooms; {len(in_rooms) - 1} changes of room"
    )
    print(f"  {'room':<20} {'stays':>5} {'calls':>5}   modules, in the order first entered")
    for name in sorted(by_room, key=room_order):
        inside = by_room[name]
        entered = dict.fromkeys(stay.module.removeprefix(name + ".") + "," for stay in inside)
        head = f"  {name:<20} {len(inside):>5} {sum(s.calls for s in inside):>5}   "
        for line in _wrapped(entered, 100 - len(head)):
            print(head + line)
            head = " " * len(head)
    if not brief:
        print("  the stays, in order (module and calls; the web's thread, then the worker's):")
        for line in _wrapped(_walk_text(stays), 96):
            print(f"    {line}")
    print_commands(walked)


def commands_by_role(walked: Walked) -> dict[str, Counter[str]]:
    """web, worker or lua (run by a script) → command → how many; a script call is named
    by the module constant holding the script."""
    scripts = script_names()
    roles: dict[str, Counter[str]] = defaultdict(Counter)
    for command in walked.commands:
        name, _, rest = str(command["command"]).partition(" ")
        name = name.upper()
        if name == "EVALSHA":
            name = scripts.get(rest.split(" ", 1)[0], "EVALSHA ?")
        roles[role_of(command, walked.clients)][name] += 1
    return roles


def print_commands(walked: Walked) -> None:
    roles = commands_by_role(walked)
    sent = sum(sum(tally.values()) for role, tally in roles.items() if role != "lua")
    inside = sum(roles["lua"].values())
    print(
        f"  Redis, from the POST to the run's acknowledgement: {sent} commands sent, and\n"
        f"  {inside} more run by the scripts they called"
    )
    order = ("web", "worker", "lua")
    for role in sorted(roles, key=lambda r: order.index(r) if r in order else len(order)):
        tally = roles[role]
        label = "scripts" if role == "lua" else role
        for line in _wrapped((f"{n} {c}," for n, c in tally.most_common()), 82):
            print(f"    {label:<8}{line}")
            label = ""


def script_names() -> dict[str, str]:
    """sha1 → where the Lua script is defined, for every script text a loaded module holds."""
    found = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in NOT_WALKED or not _module_name(
            ROOT, getattr(module, "__file__", None) or ""
        ):
            continue
        for attribute, value in vars(module).items():
            if isinstance(value, str) and "redis.call" in value:
                found[hashlib.sha1(value.encode()).hexdigest()] = f"{name}.{attribute}"
    return found


def _walk_text(stays: list[Stay]) -> Iterator[str]:
    thread = None
    for index, stay in enumerate(stays):
        side = "web" if stay.thread == WEB_THREAD else "worker"
        mark = f"[{side}] " if side != thread else ""
        thread = side
        arrow = "" if index == 0 else "→ "
        yield f"{arrow}{mark}{stay.module} {stay.calls}"


def _wrapped(pieces: Iterable[str], width: int) -> Iterator[str]:
    line = ""
    for piece in pieces:
        if line and len(line) + 1 + len(piece) > width:
            yield line
            line = piece
        else:
            line = f"{line} {piece}" if line else piece
    if line:
        yield line.rstrip(",")


def revision() -> str:
    found = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %cs"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "not a git checkout"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--no-walk", action="store_true", help="the rooms and arrows only")
    parser.add_argument("--brief", action="store_true", help="the walk without its stays")
    args = parser.parse_args()
    house = modules()
    print(f"payhook at {ROOT} ({revision()})")
    print_rooms(house)
    print_arrows(house, arrows(house))
    if args.no_walk:
        return 0
    with tempfile.TemporaryDirectory(prefix="payhook-house-") as state:
        walked = asyncio.run(asyncio.wait_for(walk(Path(state)), BOUND_SECONDS))
    print_walk(walked, house, brief=args.brief)
    return 0 if walked.state == "reported" else 1


if __name__ == "__main__":
    sys.exit(main())
