"""The search server: a FastAPI app with text/image/vector/item search and a small web page
(routes in ``docs/search.md``, schemas at ``/openapi.json``).

Every client error is a 4xx with ``{"error": message, "detail": ...}``; see
:mod:`clipforge.search.queries` for the statuses. The work of a search (encoding, FAISS) runs in
the thread pool so that slow queries do not stall the event loop.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from clipforge.search.collection import ItemNotFound
from clipforge.search.queries import (
    ApiError,
    Query,
    SearchRequest,
    parse_form,
    parse_json_body,
    too_large,
    validation_error,
)
from clipforge.search.server_config import ServerConfig, load_server_config
from clipforge.search.service import SearchService
from clipforge.version import __version__

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
FORM_OVERHEAD_BYTES = 64 * 1024  # room for the non-image fields of a request
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def create_app(config: ServerConfig | dict[str, Any] | str | os.PathLike) -> FastAPI:
    """Load every index of ``config`` (a :class:`ServerConfig`, its dict, or a YAML/JSON file)
    and return the app; loading errors (missing index, model/index mismatch) raise here."""
    service = SearchService.from_config(load_server_config(config))
    app = FastAPI(
        title="clipforge search",
        version=__version__,
        description="Text, image and vector search over embedded image collections.",
        docs_url=None,  # served below, with an offline fallback
    )
    app.state.service = service
    app.state.metrics = Metrics()
    _add_error_handlers(app)
    _add_routes(app, service, app.state.metrics)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(_MetricsMiddleware, metrics=app.state.metrics)
    return app


def _add_routes(app: FastAPI, service: SearchService, metrics: Metrics) -> None:
    limit = service.config.max_upload_bytes

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """FastAPI's Swagger UI page, plus a script that lists the routes when the UI's assets
        cannot be fetched from their CDN (the page returns 200 either way)."""
        swagger = get_swagger_ui_html(openapi_url="/openapi.json", title="clipforge search API")
        fallback = '<script src="/static/docs-fallback.js"></script></body>'
        return HTMLResponse(bytes(swagger.body).decode().replace("</body>", fallback))

    @app.post("/search", openapi_extra=_SEARCH_BODY_DOC, summary="Search an index")
    async def search(request: Request) -> JSONResponse:
        """Nearest items to a text, an image, a vector or a stored item (``id``):
        ``{"results": [{id, score, key, caption, path?, member?, metadata}], "query": {...},
        "warnings": [...]}``."""
        query = await _read_query(request, limit)
        answer = await run_in_threadpool(service.search, query)
        metrics.observe_query(answer["query"]["index"], query.kind)
        return JSONResponse(answer)  # already plain JSON types: skip FastAPI's re-encoding

    @app.get("/items/{item_id}", summary="An item's metadata")
    def item(item_id: int, index: str | None = None) -> dict[str, Any]:
        served = service.resolve(index)
        return {"index": served.name, **served.collection.items([item_id])[0]}

    @app.get("/images/{item_id}", summary="An item's image", response_class=Response)
    def image(item_id: int, index: str | None = None) -> Response:
        data, media_type = service.resolve(index).collection.image(item_id)
        return Response(data, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=3600"})  # fmt: skip

    @app.get("/indices", summary="Served indices")
    def indices() -> dict[str, Any]:
        config = service.config
        return {"indices": service.indices_summary(), "max_k": config.max_k,
                "default_k": config.resolved_default_k, "max_upload_mb": config.max_upload_mb}  # fmt: skip

    @app.get("/health", summary="Liveness")
    def health() -> dict[str, Any]:
        return {"status": "ok", "indices": len(service.indices), "version": __version__}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        sizes = {s["name"]: {"vectors": s["size"], "dim": s["dim"]}
                 for s in service.indices_summary()}  # fmt: skip
        return PlainTextResponse(metrics.render(sizes), media_type=PROMETHEUS_CONTENT_TYPE)


async def _read_query(request: Request, limit: int) -> Query:
    """Parse the body of ``POST /search`` by its content type, refusing oversized bodies before
    reading them when the client says their length, and while reading them otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in FORM_TYPES:
        body = await _read_capped(request, limit + FORM_OVERHEAD_BYTES)
        return parse_form(*await _parse_form(request, body), limit)
    if content_type in ("application/json", ""):
        # base64 takes 4 bytes per 3; the image limit applies again after decoding.
        body = await _read_capped(request, limit * 4 // 3 + FORM_OVERHEAD_BYTES)
        return parse_json_body(body, limit)
    raise ApiError(415, f"unsupported content type {content_type!r}; send application/json, "
                   f"{' or '.join(FORM_TYPES)}", {"content_type": content_type})  # fmt: skip


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise too_large(int(declared), cap, "the request body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise too_large(size, cap, "the request body")
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_form(request: Request, body: bytes) -> tuple[dict[str, str], bytes | None]:
    """``(text fields, bytes of the 'image' file or None)`` of an already read form body;
    Starlette answers a malformed one with a 400."""

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    fields: dict[str, str] = {}
    upload: bytes | None = None
    limits = {"max_files": 1, "max_fields": 16, "max_part_size": FORM_OVERHEAD_BYTES}
    async with Request(request.scope, replay).form(**limits) as form:
        for name, value in form.multi_items():
            if name in fields or (name == "image" and upload is not None):
                raise ApiError(422, f"form field {name!r} is given more than once", {"field": name})
            if isinstance(value, UploadFile):
                if name != "image":
                    raise ApiError(422, f"file part {name!r} is not expected; send the image "
                                   "as 'image'", {"field": name})  # fmt: skip
                upload = await value.read()
            else:
                fields[name] = value
    return fields, upload


def _add_error_handlers(app: FastAPI) -> None:
    def body(status: int, message: str, detail: Any = None) -> JSONResponse:
        return JSONResponse({"error": message, "detail": detail}, status_code=status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return body(err.status, err.message, err.detail)

    @app.exception_handler(ItemNotFound)
    async def not_found(request: Request, err: ItemNotFound) -> JSONResponse:
        return body(404, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return await api_error(request, validation_error("request", err.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return body(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return body(500, "internal server error", type(err).__name__)


class _MetricsMiddleware:
    """Times every HTTP request and counts it under its route template (``/items/{item_id}``,
    not each id, so the label set stays bounded) and its status."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            seconds = time.perf_counter() - started
            self.metrics.observe_request(route, scope["method"], status, seconds)


# Upper bounds in seconds, from a cached thumbnail (~1 ms) to a cold image query on a large model.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """Thread-safe counters and histograms of served requests, rendered in the Prometheus text
    format (0.0.4) by hand: request counts by route, method and status, a latency histogram by
    route and gauges of what is served are enough to run the server behind a load balancer and
    alert on it, and the format is small enough that a dependency would cost more."""

    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        # Per route: non-cumulative counts per bucket (+1 slot for +Inf), sum and count.
        self._bucket_counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = defaultdict(float)
        self._queries: dict[tuple[str, str], int] = defaultdict(int)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        slot = bisect.bisect_left(self.buckets, seconds)  # first bound >= seconds
        with self._lock:
            self._requests[(route, method, str(status))] += 1
            counts = self._bucket_counts.setdefault(route, [0] * (len(self.buckets) + 1))
            counts[slot] += 1
            self._sums[route] += seconds

    def observe_query(self, index: str, kind: str) -> None:
        with self._lock:
            self._queries[(index, kind)] += 1

    def render(self, indices: dict[str, dict[str, int]]) -> str:
        """The exposition text; ``indices`` maps index name -> {"vectors": n, "dim": d}."""
        with self._lock:
            requests = dict(self._requests)
            buckets = {route: list(counts) for route, counts in self._bucket_counts.items()}
            sums = dict(self._sums)
            queries = dict(self._queries)
        lines: list[str] = []
        _family(lines, "clipforge_http_requests_total", "counter", "HTTP requests served.")
        for (route, method, status), n in sorted(requests.items()):
            lines.append(_sample("clipforge_http_requests_total", n,
                                 route=route, method=method, status=status))  # fmt: skip
        name = "clipforge_http_request_duration_seconds"
        _family(lines, name, "histogram", "Time from request to response, by route.")
        for route, counts in sorted(buckets.items()):
            running = 0
            for bound, n in zip((*self.buckets, float("inf")), counts, strict=True):
                running += n
                lines.append(_sample(f"{name}_bucket", running, route=route, le=_number(bound)))
            lines.append(_sample(f"{name}_sum", sums[route], route=route))
            lines.append(_sample(f"{name}_count", running, route=route))
        _family(lines, "clipforge_search_queries_total", "counter", "Searches by index and kind.")
        for (index, kind), n in sorted(queries.items()):
            lines.append(_sample("clipforge_search_queries_total", n, index=index, kind=kind))
        for field, help_text in (("vectors", "Vectors in the index."), ("dim", "Vector width.")):
            _family(lines, f"clipforge_index_{field}", "gauge", help_text)
            for index, sizes in sorted(indices.items()):
                lines.append(_sample(f"clipforge_index_{field}", sizes[field], index=index))
        return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _sample(name: str, value: float, **labels: str) -> str:
    text = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return f"{name}{{{text}}} {_number(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(value) if isinstance(value, float) else str(value)


# A form carries the JSON body's fields as text, the image as a file part and the embedding as
# a JSON list in text.
_FORM_FIELDS = SearchRequest.model_json_schema()["properties"] | {
    "image": {"type": "string", "format": "binary"},
    "embedding": {"type": "string", "description": "a JSON list of floats"},
}
_SEARCH_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SearchRequest.model_json_schema()},
            "multipart/form-data": {"schema": {"type": "object", "properties": _FORM_FIELDS}},
        },
    }
}


def serve(
    config: ServerConfig | dict[str, Any] | str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
) -> None:
    """Load ``config`` and serve it with uvicorn until interrupted (what ``clipforge serve``
    runs). Binds to loopback by default: exposing the server is a deliberate choice."""
    import uvicorn

    app = create_app(config)
    logger.info("serving %d index(es) on http://%s:%d", len(app.state.service.indices), host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def single_index_config(
    index_dir: str | os.PathLike,
    *,
    name: str | None = None,
    embeddings: str | os.PathLike | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    **limits: Any,
) -> dict[str, Any]:
    """The config dict serving one index directory (``limits``: max_upload_mb, max_k, ...);
    its relative paths are read from the working directory, as every config dict's are."""
    spec = {"index": index_dir, "embeddings": embeddings, "model": model, "pretrained": pretrained}
    spec = {key: os.fspath(value) for key, value in spec.items() if value is not None}
    default_name = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(index_dir).resolve().name).lstrip("-_.")
    return {"indices": {name or default_name[:64] or "index": spec}, **limits}


def serve_index(
    index_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    **options: Any,
) -> None:
    """Serve one index directory without a config file; ``options`` as for
    :func:`single_index_config` (name, embeddings, model, pretrained, max_k, ...)."""
    serve(single_index_config(index_dir, **options), host, port, log_level=log_level)
