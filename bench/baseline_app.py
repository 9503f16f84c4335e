"""The floor for intake: an aiohttp server that answers 201 {} and does nothing else."""

from __future__ import annotations

import sys

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({}, status=201)


def main() -> None:
    app = web.Application()
    app.router.add_post("/capture_sessions", accept)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
