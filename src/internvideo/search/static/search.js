// The search page: query the API, show a grid of windows, play the chosen one with a media fragment.
// Results are built with textContent/attributes only, never innerHTML, so file names cannot inject markup.
"use strict";

const form = document.getElementById("search-form");
const input = document.getElementById("q");
const grid = document.getElementById("results");
const statusLine = document.getElementById("status");
const player = document.getElementById("player");
const video = document.getElementById("video");
const nowPlaying = document.getElementById("now-playing");

function seconds(t) {
  return t.toFixed(1) + " s";
}

function play(hit, card) {
  for (const other of grid.querySelectorAll(".hit.active")) other.classList.remove("active");
  card.classList.add("active");
  player.hidden = false;
  // "#t=start,end" makes the browser seek to start and pause at end (Media Fragments URI).
  video.src = hit.src;
  video.dataset.start = String(hit.start);
  video.dataset.end = String(hit.end);
  nowPlaying.textContent = hit.video + "  " + seconds(hit.start) + " - " + seconds(hit.end);
  const started = video.play();
  if (started) started.catch(() => {});  // autoplay may be refused; the controls still work
}

function card(hit) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = "hit";
  el.dataset.video = hit.video;
  el.dataset.start = String(hit.start);
  const img = document.createElement("img");
  img.src = hit.thumb;
  img.alt = hit.video;
  img.loading = "lazy";
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = hit.video;
  name.title = hit.video;
  const info = document.createElement("div");
  info.className = "score";
  info.textContent = seconds(hit.start) + " - " + seconds(hit.end) + " · score " + hit.score.toFixed(3);
  meta.append(name, info);
  el.append(img, meta);
  el.addEventListener("click", () => play(hit, el));
  return el;
}

async function search(q) {
  statusLine.textContent = "searching…";
  const response = await fetch("/api/search?" + new URLSearchParams({ q: q, k: "24" }));
  const body = await response.json();
  if (!response.ok) {
    statusLine.textContent = "error: " + (body.error || response.status);
    return;
  }
  grid.replaceChildren(...body.results.map(card));
  statusLine.textContent = body.results.length + " results for \u201c" + body.query + "\u201d";
  const url = new URL(window.location);
  url.searchParams.set("q", q);
  history.replaceState(null, "", url);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = input.value.trim();
  if (q) search(q).catch((e) => { statusLine.textContent = "error: " + e; });
});

const initial = new URLSearchParams(window.location.search).get("q");
if (initial) {
  input.value = initial;
  search(initial).catch((e) => { statusLine.textContent = "error: " + e; });
}
