"""The search server: the API against the Searcher, range requests, and every way of asking for what is not
served (path traversal, unknown ids, oversized queries, malformed parameters) getting a 4xx JSON error."""
from __future__ import annotations

import json
import os
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
    client = TestClient(create_app(searcher))
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


def test_video_moved_out_of_the_folder_is_not_served(served):
    client, searcher, folder, base = served
    hit = searcher.search("a triangle", 1)[0]
    target = folder / hit.video
    keep = target.read_bytes()
    try:
        target.unlink()
        os.symlink(base / "secret.txt", target)  # the indexed name now points outside the folder
        _json_error(client.get(f"/video/{hit.video_id}"), 404)
    finally:
        target.unlink()
        target.write_bytes(keep)
    assert client.get(f"/video/{hit.video_id}").status_code == 200


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
