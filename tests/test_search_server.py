"""The search server: the API against the Searcher, range requests, and every way of asking for what is not
served (path traversal, unknown ids, oversized queries, malformed parameters) getting a 4xx JSON error."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import urllib.error
import urllib.request

import pytest

import internvideo
from internvideo.search import Searcher, build_index
from internvideo.search.query import MAX_QUERY_CHARS
from internvideo.search.server import create_app

from mm_helpers import one_thread  # noqa: F401  (autouse fixture)
from search_helpers import ServerThread, search_model, search_world, video_folder  # noqa: F401

pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def served(search_world, search_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    folder = video_folder(search_world, base / "videos", clips=3)
    (base / "secret.txt").write_text("outside the indexed folder")
    out = base / "idx"
    build_index(internvideo.load_model(search_model), folder, out, model_source=search_model, window=1.0,
                stride=0.5, precision="fp32", progress=False)
    searcher = Searcher(out)
    client = TestClient(create_app(searcher), base_url="http://127.0.0.1:8000")
    yield client, searcher, folder, base
    client.close()
    searcher.close()


def _json_error(response, status):
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body["error"]


def test_api_search_matches_searcher(served):
    client, searcher, _, _ = served
    r = client.get("/api/search", params={"q": "a small green triangle", "k": 4})
    assert r.status_code == 200
    body = r.json()
    hits = searcher.search("a small green triangle", 4)
    assert [x["id"] for x in body["results"]] == [h.id for h in hits]
    assert [x["score"] for x in body["results"]] == pytest.approx([h.score for h in hits])
    first = body["results"][0]
    assert first["thumb"] == f"/thumb/{first['id']}"
    assert first["src"] == f"/video/{first['video_id']}#t={first['start']:g},{first['end']:g}"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_page_and_script(served):
    client = served[0]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="q"' in page.text and "/static/search.js" in page.text and "{{COUNT}}" not in page.text
    js = client.get("/static/search.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and ".innerHTML" not in js.text


def test_thumbnail_and_video_are_the_indexed_files(served):
    client, searcher, folder, _ = served
    hit = searcher.search("a circle", 1)[0]
    thumb = client.get(f"/thumb/{hit.id}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content == searcher.store.thumb_path(hit.id).read_bytes()
    video = client.get(f"/video/{hit.video_id}")
    data = (folder / hit.video).read_bytes()
    assert video.status_code == 200 and video.content == data
    assert video.headers["content-type"] == "video/mp4" and video.headers["accept-ranges"] == "bytes"


def test_video_range_requests(served):
    client, searcher, folder, _ = served
    hit = searcher.search("a square", 1)[0]
    data = (folder / hit.video).read_bytes()
    r = client.get(f"/video/{hit.video_id}", headers={"Range": "bytes=10-99"})
    assert r.status_code == 206 and r.content == data[10:100]
    assert r.headers["content-range"] == f"bytes 10-99/{len(data)}"
    tail = client.get(f"/video/{hit.video_id}", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == data[-16:]
    open_end = client.get(f"/video/{hit.video_id}", headers={"Range": f"bytes={len(data) - 5}-"})
    assert open_end.status_code == 206 and open_end.content == data[-5:]
    beyond = client.get(f"/video/{hit.video_id}", headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("params, needle", [
    ({}, "q"),
    ({"q": ""}, "q"),
    ({"q": "   "}, "empty"),
    ({"q": "x" * (MAX_QUERY_CHARS + 1)}, "q"),
    ({"q": "circle", "k": "0"}, "k"),
    ({"q": "circle", "k": "101"}, "k"),
    ({"q": "circle", "k": "ten"}, "k"),
    ({"q": "circle", "k": "1e3"}, "k"),
])
def test_malformed_and_oversized_queries_are_422_json(served, params, needle):
    assert needle in _json_error(served[0].get("/api/search", params=params), 422)


@pytest.mark.parametrize("path", [
    "/video/999999", "/thumb/999999", "/video/-1", "/thumb/-1", "/video/99999999999999999999999",
])
def test_unknown_ids_are_4xx_json(served, path):
    r = served[0].get(path)
    assert r.status_code in (404, 422)
    _json_error(r, r.status_code)


@pytest.mark.parametrize("path", [
    "/video/..%2F..%2Fsecret.txt", "/video/../secret.txt", "/thumb/..%2Findex.db", "/video/1%2F..%2F..%2Fsecret.txt",
    "/static/..%2F..%2Fstore.py", "/static/index.html/../../store.py", "/index.db", "/thumbs/", "/thumb/",
    "/video/", "/static/", "/videos/clips/clip_00000.mp4", "/clips/clip_00000.mp4", "/video/1.0", "/video/0x1",
    "/%2e%2e/%2e%2e/etc/passwd", "/docs", "/openapi.json",
])
def test_traversal_and_listing_attempts_are_4xx_json(served, path):
    r = served[0].get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code)
    _json_error(r, r.status_code)
    assert b"outside the indexed folder" not in r.content and b"SQLite" not in r.content


@contextlib.contextmanager
def _put_in_place(target, make):
    """Move the indexed file aside (keeping its inode and mtime), let ``make(target)`` put something there, restore."""
    aside = target.with_name(target.name + ".aside")
    os.rename(target, aside)
    try:
        make(target)
        yield
    finally:
        if target.is_dir() and not target.is_symlink():
            target.rmdir()
        elif os.path.lexists(target):
            target.unlink()
        os.rename(aside, target)


def test_video_moved_out_of_the_folder_is_not_served(served):
    client, searcher, folder, base = served
    hit = searcher.search("a triangle", 1)[0]
    with _put_in_place(folder / hit.video, lambda t: os.symlink(base / "secret.txt", t)):
        _json_error(client.get(f"/video/{hit.video_id}"), 404)
    assert client.get(f"/video/{hit.video_id}").status_code == 200


def _other_indexed(searcher, video):
    return next(h.video for h in searcher.search("a circle", 20) if h.video != video)


@pytest.mark.parametrize("swap", ["hardlink outside", "symlink inside", "hardlink inside", "copy", "directory"])
def test_a_file_swapped_after_indexing_is_not_served(served, swap, caplog):
    """Only the very file that was indexed (device, inode, size, mtime) is served; anything put in its place is
    refused (409 when another file is there, 404 when no regular file is), with a log line."""
    client, searcher, folder, base = served
    hit = searcher.search("a triangle", 1)[0]
    target = folder / hit.video
    secret = base / "secret.txt"
    other = folder / _other_indexed(searcher, hit.video)
    (folder / "not_indexed.bin").write_bytes(b"never indexed")
    make = {"hardlink outside": lambda t: os.link(secret, t),
            "symlink inside": lambda t: os.symlink(folder / "not_indexed.bin", t),
            "hardlink inside": lambda t: os.link(other, t),
            "copy": lambda t: shutil.copy2(target.with_name(target.name + ".aside"), t),
            "directory": lambda t: t.mkdir()}[swap]
    with caplog.at_level(logging.WARNING, logger="internvideo.search"), _put_in_place(target, make):
        for method in ("GET", "HEAD"):
            r = client.request(method, f"/video/{hit.video_id}", headers={"Range": "bytes=0-3"})
            assert r.status_code == (404 if swap == "directory" else 409), (swap, method, r.status_code)
            assert b"outside the indexed folder" not in r.content and b"never indexed" not in r.content
        _json_error(client.get(f"/video/{hit.video_id}"), r.status_code)
    assert any("not serving" in m and hit.video in m for m in caplog.messages)
    assert client.get(f"/video/{hit.video_id}").status_code == 200


def test_a_touched_video_is_not_served_until_reindexed(served):
    client, searcher, folder, _ = served
    hit = searcher.search("a square", 1)[0]
    target = folder / hit.video
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert "index" in _json_error(client.get(f"/video/{hit.video_id}"), 409)
    finally:
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert client.get(f"/video/{hit.video_id}").status_code == 200


@pytest.mark.parametrize("swap", ["symlink", "hardlink"])
def test_a_thumbnail_replaced_by_a_link_is_not_served(served, swap):
    client, searcher, _, base = served
    hit = searcher.search("a circle", 1)[0]
    thumb = searcher.store.thumb_path(hit.id)
    link = {"symlink": os.symlink, "hardlink": os.link}[swap]
    with _put_in_place(thumb, lambda t: link(base / "secret.txt", t)):
        _json_error(client.get(f"/thumb/{hit.id}"), 409)
    assert client.get(f"/thumb/{hit.id}").status_code == 200


def test_a_file_replaced_between_check_and_open_sends_nothing_of_it(served, tmp_path):
    """The open file is checked again (fstat): a swap after the check sends not a byte of the new file."""
    from internvideo.search.server import _verified_file_response

    client, searcher, folder, base = served
    hit = searcher.search("a circle", 1)[0]
    path, st = searcher.video_file(hit.video_id)
    secret = tmp_path / "swapped.mp4"
    secret.write_bytes(b"the swapped-in file")
    response = _verified_file_response()(secret, media_type="video/mp4", stat_result=st)
    from starlette.applications import Starlette
    from starlette.routing import Route

    app = Starlette(routes=[Route("/f", lambda request: response)])
    with TestClient(app, raise_server_exceptions=False) as c:
        try:
            r = c.get("/f")
            body = r.content
        except Exception:  # the transfer is aborted after the start line
            body = b""
    assert b"swapped-in" not in body


@pytest.mark.parametrize("host", ["evil.example", "attacker.example:8000", "127.0.0.1.nip.io", "localhost.evil.com",
                                  "127.0.0.2", "", "[::2]:8000"])
def test_requests_for_another_host_name_are_refused(served, host):
    """DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own name as Host and gets 400."""
    client, searcher, _, _ = served
    hit = searcher.search("a circle", 1)[0]
    for path in ("/", "/api/search?q=circle", f"/video/{hit.video_id}", f"/thumb/{hit.id}", "/static/search.js"):
        r = client.get(path, headers={"Host": host})
        assert "host" in _json_error(r, 400), path
        assert b"results" not in r.content


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:1234", "localhost.", "[::1]:8000"])
def test_loopback_names_are_served(served, host):
    r = served[0].get("/api/search?q=circle", headers={"Host": host})
    assert r.status_code == 200 and r.json()["results"]


def test_allowed_host_adds_a_name(served):
    from internvideo.search.server import allowed_hosts

    _, searcher, _, _ = served
    with TestClient(create_app(searcher, allowed_hosts("127.0.0.1", ["media.lan"])), base_url="http://media.lan") as c:
        assert c.get("/api/search?q=circle").status_code == 200
        _json_error(c.get("/api/search?q=circle", headers={"Host": "other.lan"}), 400)
    hosts = allowed_hosts("192.168.1.5")
    assert "192.168.1.5" in hosts and "localhost" in hosts
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0")  # a wildcard bind answers no name of its own


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "video"},
    {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},  # navigating to the API is not a page visit
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost.evil.example:8000"},
])
def test_cross_origin_reads_are_refused(served, headers):
    client, searcher, _, _ = served
    hit = searcher.search("a circle", 1)[0]
    for path in ("/api/search?q=circle", f"/video/{hit.video_id}", f"/thumb/{hit.id}"):
        r = client.get(path, headers=headers)
        assert "cross-origin" in _json_error(r, 403), path
        assert "access-control-allow-origin" not in r.headers


def test_same_origin_reads_and_page_visits_are_served(served):
    client = served[0]
    r = client.get("/api/search?q=circle", headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors",
                                                    "Origin": "http://127.0.0.1:8000"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    page = client.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert page.status_code == 200  # following a link to the page is fine; its reads are then same-origin
    # A preflight is never answered with CORS permission.
    pre = client.options("/api/search", headers={"Origin": "http://evil.example",
                                                  "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers


def test_head_works_wherever_get_does(served):
    client, searcher, folder, _ = served
    app = client.app.app
    for route in app.routes:
        if "GET" in getattr(route, "methods", ()):
            assert "HEAD" in route.methods, route.path
    hit = searcher.search("a circle", 1)[0]
    size = (folder / hit.video).stat().st_size
    for path in ("/", "/static/search.js", "/api/search?q=circle", f"/video/{hit.video_id}", f"/thumb/{hit.id}"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"], path
    assert client.head(f"/video/{hit.video_id}").headers["content-length"] == str(size)
    ranged = client.head(f"/video/{hit.video_id}", headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.headers["content-range"] == f"bytes 0-9/{size}"
    missing = client.head("/video/999999")
    assert missing.status_code == 404 and missing.content == b""


@pytest.mark.parametrize("value", ["bytes=abc", "bytes=5-3", "items=0-5", "bytes=", "bytes=1-2,,", "bytes=--1",
                                   "bytes=0-1,x", "bytes 0-10", "bytes=-", "bytes=1-2," + ",".join(["3-4"] * 40),
                                   "bytes=\u00e9-1"])
def test_malformed_range_headers_get_the_whole_file(served, value):
    client, searcher, folder, _ = served
    hit = searcher.search("a square", 1)[0]
    data = (folder / hit.video).read_bytes()
    r = client.get(f"/video/{hit.video_id}", headers={"Range": value.encode("utf-8")})
    assert r.status_code == 200 and r.content == data, value


@pytest.mark.parametrize("value", ["bytes=999999999-", "bytes=-0"])
def test_unsatisfiable_ranges_are_416_json(served, value):
    client, searcher, folder, _ = served
    hit = searcher.search("a square", 1)[0]
    size = (folder / hit.video).stat().st_size
    r = client.get(f"/video/{hit.video_id}", headers={"Range": value})
    _json_error(r, 416)
    assert r.headers["content-range"] == f"bytes */{size}"


def test_an_index_of_the_older_schema_is_upgraded_by_an_index_run(search_world, search_model, tmp_path):
    """Version-1 indexes recorded no inode/device: serving refuses them with a hint; an index run adds the
    columns without embedding anything again, and then the files are served."""
    import sqlite3

    from internvideo.search import SearchIndexError
    from internvideo.search.store import DB_NAME

    folder = video_folder(search_world, tmp_path / "videos", clips=2)
    out = tmp_path / "idx"
    model = internvideo.load_model(search_model)
    build_index(model, folder, out, model_source=search_model, window=1.0, stride=0.5, precision="fp32",
                progress=False)
    db = sqlite3.connect(out / DB_NAME)  # make it look like version 1
    db.execute("ALTER TABLE videos DROP COLUMN dev")
    db.execute("ALTER TABLE videos DROP COLUMN ino")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(SearchIndexError, match="internvideo index"):
        Searcher(out)
    summary = build_index(model, folder, out, model_source=search_model, window=1.0, stride=0.5, precision="fp32",
                          progress=False)
    assert summary["indexed"] == 0 and summary["unchanged"] == summary["videos"] > 0
    searcher = Searcher(out)
    try:
        hit = searcher.search("a circle", 1)[0]
        with TestClient(create_app(searcher), base_url="http://localhost") as c:
            assert c.get(f"/video/{hit.video_id}").content == (folder / hit.video).read_bytes()
    finally:
        searcher.close()


def test_real_server_on_loopback(served):
    """uvicorn bound to 127.0.0.1 only; every wait is bounded."""
    _, searcher, _, _ = served
    with ServerThread(create_app(searcher)) as server:
        assert server.server.config.host == "127.0.0.1"
        with urllib.request.urlopen(f"{server.url}/api/search?q=a%20red%20circle&k=2", timeout=10) as r:
            body = json.loads(r.read())
        assert len(body["results"]) == 2
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{server.url}/video/..%2F..%2Fsecret.txt", timeout=10)
        assert e.value.code in (404, 422) and "error" in json.loads(e.value.read())
