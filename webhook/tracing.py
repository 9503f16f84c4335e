"""The intake request's server span: the root of a session's trace (or the child of the
caller's, when the request carries a W3C `traceparent`)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from config.tracing import Tracer


def traced(tracer: Tracer) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The route's pattern, not the path: a path holds a session id, and span names are
        # meant to group.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        with tracer.span(
            f"{request.method} {route}",
            {"http.request.method": request.method, "http.route": route},
            parent=request.headers,
            role="server",
        ):
            response = await handler(request)
            tracer.annotate({"http.response.status_code": response.status})
            return response

    return middleware
