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

Only files recorded in the index are served, looked up by integer id (never by
a path from the request) and checked to lie inside the indexed folder.
Malformed parameters, oversized queries and unknown ids get a 4xx answer with
a JSON ``{"error": ...}`` body. Binds to 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import mimetypes
from importlib import resources
from typing import Any

from ..extras import require
from .query import MAX_K, MAX_QUERY_CHARS, Searcher, templates_from_args

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

__all__ = ["create_app", "serve", "add_arguments", "main"]


def _static(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def create_app(searcher: Searcher) -> Any:
    """The FastAPI application over an open :class:`~.query.Searcher`."""
    require("fastapi", "search", "the search server")
    from fastapi import FastAPI, Path, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException

    app = FastAPI(title="internvideo search", docs_url=None, redoc_url=None, openapi_url=None)
    page, script = _static("index.html"), _static("search.js")

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

    @app.get("/", response_class=HTMLResponse)
    def index_page() -> HTMLResponse:
        return HTMLResponse(page.replace("{{COUNT}}", str(len(searcher))))

    @app.get("/static/search.js")
    def search_js() -> Response:
        return Response(script, media_type="text/javascript")

    @app.get("/api/search")
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

    @app.get("/thumb/{window_id}")
    def thumb(window_id: str = Path(..., pattern=id_pattern)) -> Response:
        path = searcher.thumb_file(int(window_id))
        if path is None:
            return error(404, f"no thumbnail for window {window_id}")
        return FileResponse(path, media_type="image/jpeg")

    @app.get("/video/{video_id}")
    def video(video_id: str = Path(..., pattern=id_pattern)) -> Response:
        path = searcher.video_file(int(video_id))
        if path is None:
            return error(404, f"no indexed video {video_id}")
        media = _MEDIA_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media)

    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(index_dir: str, host: str = "127.0.0.1", port: int = 8000, *, model: str | None = None,
          templates: tuple[str, ...] | None = None, device: str | None = None) -> None:
    """Open the index and run the server until interrupted."""
    uvicorn = require("uvicorn", "search", "internvideo serve")

    kwargs = {"templates": templates} if templates else {}
    searcher = Searcher(index_dir, model, device=device, **kwargs)
    if not _is_loopback(host):
        log.warning("serving on %s: anyone who can reach this address can search and watch the indexed videos", host)
    print(f"serving {len(searcher)} windows from {index_dir} at http://{host}:{port}/  (Ctrl+C to stop)")
    try:
        uvicorn.run(create_app(searcher), host=host, port=port, log_level="warning")
    finally:
        searcher.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo serve``."""
    parser.add_argument("index_dir", help="an index folder written by 'internvideo index'")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default=None, help="model to embed queries with (default: the index's)")
    parser.add_argument("--templates", default=None, help="prompt templates file, one per line with {}")
    parser.add_argument("--no-templates", action="store_true", help="embed queries as they are")
    parser.add_argument("--device", default=None)


def main(args: argparse.Namespace) -> int:
    serve(args.index_dir, args.host, args.port, model=args.model, templates=templates_from_args(args),
          device=args.device)
    return 0
