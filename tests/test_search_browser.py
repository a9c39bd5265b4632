"""The search page in a real browser: headless Chromium (the Debian package) driven by Playwright.

A tiny model is trained for a few seconds on the windows of three 2-second
videos (each two synthetic clips back to back), the videos are indexed, a
caption of one clip is typed into the page, and the test checks that the
video holding that clip is among the results, clicks it, and checks that the
video element plays from the window's start time.

Without Chromium these tests skip with a message on how to install it; with
``CI=true`` a missing browser is a failure.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import internvideo
from internvideo.search import Searcher, build_index
from internvideo.search.server import create_app

from mm_helpers import one_thread  # noqa: F401  (autouse fixture)
from search_helpers import ServerThread, composite_videos, search_world, train_tiny_search_model  # noqa: F401
from search_helpers import world_captions

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("INTERNVIDEO_TEST_ARTIFACTS", REPO / "test-artifacts"))
INSTALL_HINT = ("install Chromium and Playwright for Python: 'apt-get install -y chromium' (Debian/Ubuntu) and "
                "'pip install -r requirements-test.txt'; or point INTERNVIDEO_CHROMIUM at a Chromium binary")


def chromium_binary() -> str | None:
    """The system Chromium: $INTERNVIDEO_CHROMIUM, Debian's real binary behind its wrapper script, or on PATH."""
    candidates = [os.environ.get("INTERNVIDEO_CHROMIUM"), "/usr/lib/chromium/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run in CI: {reason} ({INSTALL_HINT})")
    pytest.skip(f"{reason}; {INSTALL_HINT}")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed")
    binary = chromium_binary()
    if binary is None:
        _missing("no Chromium found")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=binary, headless=True, args=["--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def trained_index(search_world, tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    folder = base / "videos"
    scenes = composite_videos(search_world, folder, count=3)
    captions = world_captions(search_world)
    samples = [(folder / name, start, 8, captions[clip]) for name, parts in scenes for start, clip in parts]
    model_dir = train_tiny_search_model(samples, base / "model", steps=60)
    out = base / "idx"
    build_index(internvideo.load_model(model_dir), folder, out, model_source=model_dir, window=1.0, stride=1.0,
                precision="fp32", progress=False)
    return out, scenes, captions


def test_trained_tiny_model_finds_each_window(trained_index):
    """Not the browser yet: the briefly trained model ranks each caption's window first (the premise below)."""
    out, scenes, captions = trained_index
    searcher = Searcher(out)
    try:
        for name, parts in scenes:
            for start, clip in parts:
                top = searcher.search(captions[clip][0], k=1)[0]
                assert (top.video, top.start) == (name, start / 8), (clip, captions[clip][0], top)
    finally:
        searcher.close()


def test_type_caption_click_result_video_plays_from_window_start(browser, trained_index):
    out, scenes, captions = trained_index
    name, parts = scenes[1]
    start_frame, clip = parts[1]  # the second clip of the second video: its window starts at 1 s
    start = start_frame / 8
    caption = captions[clip][0]
    searcher = Searcher(out)
    try:
        with ServerThread(create_app(searcher)) as server:
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/", timeout=15000)
            page.fill("#q", caption)
            page.press("#q", "Enter")
            page.wait_for_selector(".hit", timeout=15000)
            cards = page.locator(".hit")
            found = [(cards.nth(i).get_attribute("data-video"), float(cards.nth(i).get_attribute("data-start")))
                     for i in range(cards.count())]
            assert (name, start) in found, (caption, found)
            target = page.locator(f'.hit[data-video="{name}"][data-start="{start:g}"]')
            target.click()
            # Playing from the window start: the first played range begins at START (the #t= fragment's seek).
            page.wait_for_function(
                "(s) => { const v = document.getElementById('video');"
                " return v.readyState >= 2 && v.played.length > 0 && v.currentTime >= s - 0.05; }",
                arg=start, timeout=15000)
            state = page.evaluate("() => { const v = document.getElementById('video');"
                                  " return {src: v.currentSrc, t: v.currentTime, played: v.played.start(0),"
                                  " error: v.error && v.error.code}; }")
            assert state["error"] is None
            assert state["src"].endswith(f"#t={start:g},{start + 1:g}"), state
            assert abs(state["played"] - start) < 0.1, state
            assert start - 0.05 <= state["t"] <= start + 1.0 + 0.1, state
            assert page.locator("#now-playing").inner_text().startswith(name)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "search_page.png"), full_page=True)
            assert not errors, errors
            page.close()
    finally:
        searcher.close()
    assert (ARTIFACTS / "search_page.png").stat().st_size > 1000
