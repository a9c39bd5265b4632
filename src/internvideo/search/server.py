"""``internvideo serve INDEX_DIR [--host 127.0.0.1 --port 8000]``: search an index from a web page.

Routes (everything else is a JSON 404):

* ``GET /`` the page (search box, result grid, a player for the chosen window);
  ``GET /static/search.js`` its script;
* ``GET /api/search?q=TEXT&k=10`` results as JSON ``{"query", "k", "results": [{"rank", "id", "video_id",
  "video", "start", "end", "score", "thumb", "src"}]}``;
* ``GET /thumb/{window_id}`` a window's JPEG;
* ``GET /video/{video_id}`` an indexed video file, with HTTP range requests so
  the browser can seek; the page plays a window with the media fragment
  ``/video/ID#t=START,END``.

Every route answers ``HEAD`` as it answers ``GET``. Only files recorded in the
index are served, looked up by integer id (never by a path from the request),
and only while they are still the file that was indexed (see
:meth:`~.query.Searcher.video_file`). Malformed parameters, oversized queries
and unknown ids get a 4xx answer with a JSON ``{"error": ...}`` body; so does
every other error, whichever layer raised it.

A browser on the same machine is a client too, so besides binding to
127.0.0.1 the app refuses (see :class:`_Guard`):

* a ``Host`` header naming anything but the host it was started for, the
  loopback names and ``--allowed-host`` names (400): a hostile page whose
  name resolves to 127.0.0.1 (DNS rebinding) gets nothing;
* cross-origin reads (403): ``Sec-Fetch-Site: cross-site``/``same-site`` and an
  ``Origin`` that is not an allowed host; no CORS header is ever sent.

A ``Range`` header that is not valid RFC 9110 syntax is ignored (the whole
file is served, as RFC 9110 allows).
"""
from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import logging
import mimetypes
import os
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .query import MAX_K, MAX_QUERY_CHARS, NotServed, Searcher, templates_from_args
from .. import argtypes
from ..errors import UsageError
from ..fileio import printable

log = logging.getLogger("internvideo.search")

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; media-src 'self'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'",
}
_MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
                ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ts": "video/mp2t", ".gif": "image/gif",
                ".mpg": "video/mpeg", ".mpeg": "video/mpeg"}

#: Names that always mean this machine; the host the server was started for and --allowed-host come on top.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# RFC 9110 Section 14.1.2: "bytes=" then comma-separated "first-[last]" or "-suffix".
_RANGE_SPEC = re.compile(r"^(?:([0-9]+)-([0-9]*)|-([0-9]+))$")
_MAX_RANGES = 16

__all__ = ["create_app", "serve", "add_arguments", "main", "allowed_hosts", "LOOPBACK_NAMES"]


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def allowed_hosts(host: str = "127.0.0.1", extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The ``Host`` names the server answers: the loopback names, ``host`` (unless a wildcard address) and ``extra``."""
    names = list(LOOPBACK_NAMES)
    wildcard = host in ("", "0.0.0.0", "::")
    for given in ([] if wildcard else [host]) + list(extra):
        name = _host_name(given)
        if not name:
            raise UsageError(f"--allowed-host {given!r}: not a host name")
        names.append(name)
    return tuple(dict.fromkeys(names))


def _host_name(value: str) -> str:
    """The host part of a ``Host`` header or name, lower case, no port, no brackets, no trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        value = value[1:value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.split(":")[0]
    return value.rstrip(".")


def _valid_range(value: str) -> bool:
    """Whether a ``Range`` header is well-formed RFC 9110 byte ranges (satisfiable or not is the file's business)."""
    unit, _, specs = value.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return False
    parts = [p.strip() for p in specs.split(",")]
    if len(parts) > _MAX_RANGES:
        return False
    for part in parts:
        m = _RANGE_SPEC.match(part)
        if m is None or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            return False
    return True


class _Guard:
    """ASGI wrapper: who may ask (Host, cross-origin), ``HEAD`` like ``GET``, bad ``Range`` ignored, JSON errors.

    * ``Host`` must be an allowed name (400), so DNS rebinding reaches nothing;
    * ``Sec-Fetch-Site: cross-site``/``same-site`` (403) unless a top-level
      navigation to the page itself, and an ``Origin`` naming a host not
      allowed (403): another site's script can neither read results nor
      embed the videos;
    * a ``HEAD`` answer carries no body;
    * a ``Range`` header that is not valid syntax is removed (the whole file is
      served, RFC 9110 Section 14.2);
    * any error answer not already JSON (Starlette's own 400/416 texts) is
      rewritten as ``{"error": ...}``.
    """

    def __init__(self, app: Any, hosts: Sequence[str]) -> None:
        self.app, self.hosts = app, frozenset(hosts)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            log.warning("refused %s %s: %s", scope.get("method"), printable(scope.get("path")), printable(refusal[1]))
            return await _send_json(send, refusal[0], refusal[1])
        if "range" in headers and not _valid_range(headers["range"]):
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"range"]}
        # Every route takes HEAD as well as GET (FileResponse then sends no body; _JsonErrors drops the others').
        await self.app(scope, receive, _JsonErrors(send, scope.get("method") == "HEAD"))

    def _refusal(self, scope: dict, headers: dict[str, str]) -> tuple[int, str] | None:
        host = _host_name(headers.get("host", ""))
        if host not in self.hosts:
            return 400, f"host {host or '(none)'!r} is not served here (start the server with --allowed-host NAME)"
        site = headers.get("sec-fetch-site", "none")
        page_visit = headers.get("sec-fetch-mode") == "navigate" and scope.get("path") == "/"
        if site in ("cross-site", "same-site") and not page_visit:
            return 403, "cross-origin requests are refused"
        origin = headers.get("origin")
        if origin is not None and _host_name(urlsplit(origin).netloc) not in self.hosts:
            return 403, "cross-origin requests are refused"
        return None


async def _send_json(send: Any, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    head += [(k.lower().encode(), v.encode()) for k, v in _SECURITY_HEADERS.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class _JsonErrors:
    """A ``send`` that drops bodies for ``HEAD`` and turns non-JSON error answers into the JSON error shape."""

    _KEEP = (b"content-range", b"allow")

    def __init__(self, send: Any, head: bool) -> None:
        self.send, self.head = send, head
        self.start: dict | None = None  # a held-back non-JSON error start
        self.body = b""

    async def __call__(self, message: dict) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            hdrs = dict((k.lower(), v) for k, v in message.get("headers", []))
            if message["status"] >= 400 and not hdrs.get(b"content-type", b"").startswith(b"application/json"):
                self.start = message
                return
        elif kind == "http.response.body" and self.start is not None:
            self.body += message.get("body", b"")
            if message.get("more_body"):
                return
            status = self.start["status"]
            text = self.body.decode("utf-8", "replace").strip() or f"HTTP {status}"
            keep = [(k, v) for k, v in self.start.get("headers", []) if k.lower() in self._KEEP]
            return await _send_json(self._headless, status, text, keep)
        elif kind == "http.response.body" and self.head:
            message = {**message, "body": b""}
        await self.send(message)

    async def _headless(self, message: dict) -> None:
        if self.head and message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await self.send(message)


def _verified_file_response() -> type:
    """FileResponse that re-checks, on the open file, that it is the file checked before (no swap in between)."""
    import contextlib

    import anyio
    from fastapi.responses import FileResponse

    class VerifiedFileResponse(FileResponse):
        @contextlib.asynccontextmanager
        async def _open_file(self):
            file = await anyio.open_file(self.path, mode="rb")
            try:
                st = os.fstat(file.wrapped.fileno())
                want = self.stat_result
                if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != (want.st_dev, want.st_ino, want.st_size,
                                                                         want.st_mtime_ns):
                    raise RuntimeError(f"{self.path} was replaced while being served; nothing of it was sent")
                yield file
            finally:
                with anyio.CancelScope(shield=True):
                    await file.aclose()

    return VerifiedFileResponse


def create_app(searcher: Searcher, hosts: Sequence[str] | None = None) -> Any:
    """The FastAPI application over an open :class:`~.query.Searcher`, answering the ``Host`` names ``hosts``
    (default :func:`allowed_hosts`: the loopback names)."""
    from fastapi import FastAPI, Path, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException

    app = FastAPI(title="internvideo search", docs_url=None, redoc_url=None, openapi_url=None)
    page, script = _static("index.html"), _static("search.js")
    file_response = _verified_file_response()
    get = functools.partial(app.api_route, methods=["GET", "HEAD"])

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=_SECURITY_HEADERS)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "error"
        return error(exc.status_code, "not found" if exc.status_code == 404 and message == "Not Found" else message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return error(422, "; ".join(parts) or "invalid request")

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in _SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @get("/", response_class=HTMLResponse)
    def index_page() -> HTMLResponse:
        return HTMLResponse(page.replace("{{COUNT}}", str(len(searcher))))

    @get("/static/search.js")
    def search_js() -> Response:
        return Response(script, media_type="text/javascript")

    @get("/api/search")
    def api_search(q: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS),
                   k: int = Query(10, ge=1, le=MAX_K)) -> JSONResponse:
        if not q.strip():
            return error(422, "q: empty query")
        hits = searcher.search(q, k)
        results = [{**h.as_dict(), "thumb": f"/thumb/{h.id}", "src": f"/video/{h.video_id}#t={h.start:g},{h.end:g}"}
                   for h in hits]
        return JSONResponse({"query": q, "k": k, "results": results})

    # Ids are plain decimal integers (no sign, no "1.0", no "0x1"), short enough to be a SQLite integer.
    id_pattern = r"^[0-9]{1,18}$"

    def send_file(find: Any, item_id: str, media: Any) -> Response:
        try:
            path, st = find(int(item_id))
        except NotServed as e:
            log.warning("not serving: %s", printable(e))
            return error(e.status, str(e))
        return file_response(path, media_type=media(path), stat_result=st)

    @get("/thumb/{window_id}")
    def thumb(window_id: str = Path(..., pattern=id_pattern)) -> Response:
        return send_file(searcher.thumb_file, window_id, lambda path: "image/jpeg")

    @get("/video/{video_id}")
    def video(video_id: str = Path(..., pattern=id_pattern)) -> Response:
        return send_file(searcher.video_file, video_id, lambda path: _MEDIA_TYPES.get(path.suffix.lower())
                         or mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    return _Guard(app, allowed_hosts() if hosts is None else hosts)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(index_dir: str, host: str = "127.0.0.1", port: int = 8000, *, model: str | None = None,
          templates: tuple[str, ...] | None = None, device: str | None = None,
          allowed_host: Sequence[str] = ()) -> None:
    """Open the index and run the server until interrupted; it answers ``Host`` names of :func:`allowed_hosts`."""
    import uvicorn

    hosts = allowed_hosts(host, allowed_host)
    kwargs = {"templates": templates} if templates else {}
    searcher = Searcher(index_dir, model, device=device, **kwargs)
    if not _is_loopback(host):
        log.warning("serving on %s: anyone who can reach this address can search and watch the indexed videos", host)
    print(f"serving {len(searcher)} windows from {index_dir} at http://{host}:{port}/  (Ctrl+C to stop)")
    try:
        uvicorn.run(create_app(searcher, hosts), host=host, port=port, log_level="warning")
    finally:
        searcher.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo serve``."""
    parser.add_argument("index_dir", help="an index folder written by 'internvideo index'")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=argtypes.port, default=8000)
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="another Host name to answer (repeatable; default: the --host address and "
                             "localhost, 127.0.0.1, ::1); requests naming any other host get 400")
    parser.add_argument("--model", default=None, help="model to embed queries with (default: the index's)")
    parser.add_argument("--templates", default=None, help="prompt templates file, one per line with {}")
    parser.add_argument("--no-templates", action="store_true", help="embed queries as they are")
    parser.add_argument("--device", default=None)


def main(args: argparse.Namespace) -> int:
    serve(args.index_dir, args.host, args.port, model=args.model, templates=templates_from_args(args),
          device=args.device, allowed_host=args.allowed_host)
    return 0
