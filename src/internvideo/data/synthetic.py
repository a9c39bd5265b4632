"""A synthetic video world: small real videos plus annotations in every supported format.

Coloured shapes on textured, noisy backgrounds perform one of ten actions.
The actions come in five time-reversed pairs (moving left / right, up / down,
growing / shrinking, rotating clockwise / counterclockwise, appearing /
disappearing) drawn so that a video and its reverse have the same frame
distribution: no single frame tells them apart, only motion does. Appearance
facts (colour, shape, size) vary independently, so captions and questions
need both appearance and motion. Everything is deterministic by ``seed``.

Call :func:`make_world` (the CLI's ``internvideo synth OUT --videos N --seed S``).
One seed gives the same files, byte for byte (videos included: see ``_ENCODER``).
It writes this layout; every path inside an annotation file is relative to the
folder of that file::

    OUT/
      world.json                 seed, settings, class names, and every clip's facts
      classes.txt                the 10 action names ("moving left", ...), line i = label i;
                                 readable enough to serve as zero-shot prompts
      videos/clip_00000.mp4 ...  action clips (h264, size x size, num_frames frames at fps)
      train.txt val.txt test.txt classification lists "videos/clip_00000.mp4 <label>"
                                 (70/15/15 split, stratified by class)
      captions_{train,val,test}.jsonl
                                 video-text: {"video", "caption": [4 captions]}, varied
                                 templates and synonyms ("a small red circle slides to the left")
      qa_{train,val,test}.jsonl  {"video", "question", "answer", "candidates", "type"}: colour,
                                 shape, size, action and motion ("which way does the red
                                 square move?") questions about the acting shape
      mc_{val,test}.jsonl        multiple choice, QA format: pick the right caption among 5
                                 (one is the time-reversed caption of the same shape)
      openset_{train,val,test}.txt
                                 open-set recognition: train/val hold only known classes;
                                 test holds all, with held-out classes labelled -1
                                 (held-out names in world.json "held_out_classes")
      images/img_00000.png, image_text.jsonl
                                 image-text pairs (single frames of still shapes)
      localization/long_00000.mp4, activitynet.json
                                 long videos with 2-3 action segments and still gaps;
                                 ActivityNet JSON keyed by file stem, times in seconds
      ava/ava_00000.mp4, ava_{train,val}.csv, label_map.pbtxt
                                 two shapes doing two different actions at once; AVA-style rows for every frame:
                                 video_id, timestamp (s), x1, y1, x2, y2 (0-1), action_id, person_id
                                 with action_id = label + 1 (AVA ids start at 1)

Defaults (600 clips of 16 frames at 64 px) take a few seconds per hundred
clips on one core.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .video import write_video

__all__ = ["ACTIONS", "COLORS", "SHAPES", "SIZES", "HELD_OUT_CLASSES", "World", "make_world", "render_clip"]

ACTIONS: tuple[str, ...] = (
    "moving left", "moving right", "moving up", "moving down", "growing", "shrinking",
    "rotating clockwise", "rotating counterclockwise", "appearing", "disappearing",
)
#: label -> label of the same action played backwards
REVERSED = {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4, 6: 7, 7: 6, 8: 9, 9: 8}
#: classes never seen in open-set training (one reversed pair)
HELD_OUT_CLASSES: tuple[str, ...] = ("appearing", "disappearing")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35), "green": (35, 190, 60), "blue": (40, 80, 235), "yellow": (240, 220, 30),
    "purple": (155, 50, 205), "orange": (250, 140, 20), "white": (250, 250, 250), "cyan": (30, 215, 225),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
#: circumradius as a fraction of the frame side
SIZES: dict[str, float] = {"small": 0.12, "large": 0.2}

_SHAPE_WORDS = {"circle": ("circle", "disc", "ball", "round shape"), "square": ("square", "box", "block"),
                "triangle": ("triangle", "triangular shape")}
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
_VERBS = {
    "moving left": ("moves to the left", "slides to the left", "travels leftwards", "drifts left", "goes left"),
    "moving right": ("moves to the right", "slides to the right", "travels rightwards", "drifts right",
                     "goes right"),
    "moving up": ("moves up", "rises", "slides upwards", "travels towards the top", "goes up"),
    "moving down": ("moves down", "sinks", "slides downwards", "falls towards the bottom", "goes down"),
    "growing": ("grows", "gets bigger", "expands", "swells", "increases in size"),
    "shrinking": ("shrinks", "gets smaller", "contracts", "dwindles", "decreases in size"),
    "rotating clockwise": ("rotates clockwise", "spins clockwise", "turns clockwise", "twists to the right"),
    "rotating counterclockwise": ("rotates counterclockwise", "spins anticlockwise", "turns counterclockwise",
                                  "twists to the left"),
    "appearing": ("appears", "fades in", "comes into view", "materialises"),
    "disappearing": ("disappears", "fades out", "vanishes", "fades away"),
}
_TEMPLATES = (
    "a {size} {color} {shape} {verb}",
    "the {color} {shape} {verb}",
    "a {color} {shape} {verb} over a noisy background",
    "we see a {size} {color} {shape} that {verb}",
    "in this clip a {color} {shape} {verb}",
    "a {shape}, {size} and {color}, {verb}",
    "there is a {size} {shape} in {color} which {verb}",
)


# ----------------------------------------------------------------------------- scene description


@dataclasses.dataclass(frozen=True)
class Actor:
    """One shape and what it does; ``path`` holds its state at t = 0 and t = 1."""

    shape: str
    color: str
    size: str
    action: int
    start: tuple[float, float, float, float, float]  # cx, cy, scale, angle (rad), alpha
    end: tuple[float, float, float, float, float]

    def state(self, t: float) -> tuple[float, ...]:
        # appearing/disappearing fade over the middle of the clip; everything else is linear
        if ACTIONS[self.action] in ("appearing", "disappearing"):
            t = min(max((t - 0.25) / 0.5, 0.0), 1.0)
        return tuple(a + (b - a) * t for a, b in zip(self.start, self.end, strict=True))

    def facts(self) -> dict[str, object]:
        return {"shape": self.shape, "color": self.color, "size": self.size, "action": ACTIONS[self.action],
                "label": self.action}


def _random_actor(rng: np.random.Generator, action: int, region: tuple[float, float, float, float] = (0, 0, 1, 1),
                  exclude_color: str | None = None, sizes: Sequence[str] = tuple(SIZES)) -> Actor:
    """An actor doing ``action`` inside ``region`` (x0, y0, x1, y1 as fractions of the frame).

    A reversed pair draws the same trajectory and plays it the other way,
    which is what makes the pair indistinguishable frame by frame.
    """
    name = ACTIONS[action]
    shapes = SHAPES if not name.startswith("rotating") else ("square", "triangle")  # a circle shows no rotation
    colors = [c for c in COLORS if c != exclude_color]
    shape, color = str(rng.choice(shapes)), str(rng.choice(colors))
    size = str(rng.choice(list(sizes)))
    radius = SIZES[size]
    x0, y0, x1, y1 = region
    margin = radius * 1.25
    travel = min(0.35, 0.9 * ((x1 - x0) - 2 * margin), 0.9 * ((y1 - y0) - 2 * margin))
    cx = rng.uniform(x0 + margin, x1 - margin)
    cy = rng.uniform(y0 + margin, y1 - margin)
    angle = rng.uniform(0, 2 * math.pi)
    a = [cx, cy, 1.0, angle, 1.0]
    b = list(a)
    pair = min(action, REVERSED[action])  # the "forward" member of the reversed pair
    if pair == 0:  # horizontal motion along a random segment
        a[0] = rng.uniform(x0 + margin, x1 - margin - travel)
        b[0] = a[0] + travel
    elif pair == 2:
        a[1] = rng.uniform(y0 + margin, y1 - margin - travel)
        b[1] = a[1] + travel
    elif pair == 4:
        a[2], b[2] = 0.55, 1.25
    elif pair == 6:
        b[3] = a[3] + math.pi / 2  # image y points down: increasing angle turns clockwise on screen
    elif pair == 8:
        a[4], b[4] = 0.0, 1.0
    # left = decreasing x, up = decreasing y, shrinking, counterclockwise, disappearing: play backwards
    forward = name in ("moving right", "moving down", "growing", "rotating clockwise", "appearing")
    start, end = (a, b) if forward else (b, a)
    return Actor(shape, color, size, action, tuple(start), tuple(end))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- rendering


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted, smoothly textured background (coarse noise upsampled) with a faint pattern."""
    base = rng.uniform(70, 150)
    tint = rng.normal(0, 12, 3)
    coarse = rng.normal(0, 22, (6, 6, 3))
    ys = np.linspace(0, 5, size)
    y0 = np.floor(ys).astype(int).clip(0, 4)
    fy = (ys - y0)[:, None, None]
    rows = coarse[y0] * (1 - fy) + coarse[y0 + 1] * fy  # (size, 6, 3)
    x0, fx = y0, (ys - y0)[None, :, None]
    smooth = rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx
    yy, xx = np.mgrid[0:size, 0:size] / size
    freq, phase = rng.uniform(3, 9), rng.uniform(0, 2 * math.pi)
    stripes = 8 * np.sin(2 * math.pi * freq * (xx * math.cos(phase) + yy * math.sin(phase)))[..., None]
    return np.clip(base + tint + smooth + stripes, 0, 255).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _pixel_grid(size_px: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size_px, 0:size_px].astype(np.float32) + 0.5
    return yy, xx


def _coverage(shape: str, size_px: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Anti-aliased coverage (0-1) of a shape, from its signed distance in pixels."""
    yy, xx = _pixel_grid(size_px)
    px, py = xx - cx * size_px, yy - cy * size_px
    r = radius * size_px
    if shape == "circle":
        dist = np.hypot(px, py) - r
    else:
        c, s = math.cos(angle), math.sin(angle)
        qx, qy = c * px + s * py, -s * px + c * py  # into the shape's own frame
        if shape == "square":
            dist = np.maximum(np.abs(qx), np.abs(qy)) - r * 0.75
        else:  # equilateral triangle: the farthest of three edge half-planes
            normals = [(math.cos(a), math.sin(a)) for a in (math.pi / 2, math.pi / 2 + 2.0944, math.pi / 2 + 4.1888)]
            dist = np.max([nx * qx + ny * qy for nx, ny in normals], axis=0) - r * 0.5
    return np.clip(0.5 - dist, 0.0, 1.0)


def _box(actor: Actor, state: Sequence[float]) -> tuple[float, float, float, float]:
    """Bounding box (x1, y1, x2, y2, fractions of the frame) of an actor in ``state``."""
    cx, cy, scale = state[0], state[1], state[2]
    r = SIZES[actor.size] * scale * (0.75 * math.sqrt(2) if actor.shape == "square" else 1.0)
    return (max(cx - r, 0.0), max(cy - r, 0.0), min(cx + r, 1.0), min(cy + r, 1.0))


def render_clip(rng: np.random.Generator, actors: Sequence[Actor | None], size: int, num_frames: int,
                schedule: Sequence[Sequence[tuple[Actor, float] | None]] | None = None,
                noise: float = 5.0) -> np.ndarray:
    """Render ``(num_frames, size, size, 3)`` uint8 frames.

    By default every actor follows its action over the whole clip. A
    ``schedule`` instead lists, per frame, ``(actor, t)`` pairs to draw (used
    for long videos whose segments start and stop). ``noise`` is the sensor
    noise's sigma in grey levels (drawn even when 0, so the random stream and
    everything else drawn from ``rng`` stay the same).
    """
    background = _background(rng, size)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        drawn = schedule[i] if schedule is not None else [(a, t) for a in actors if a is not None]
        image = background.copy()
        for item in drawn:
            if item is None:
                continue
            actor, at = item
            cx, cy, scale, angle, alpha = actor.state(at)
            cover = _coverage(actor.shape, size, cx, cy, SIZES[actor.size] * scale, angle)[..., None] * alpha
            image = image * (1 - cover) + np.asarray(COLORS[actor.color], np.float32) * cover
        image += rng.normal(0, noise, image.shape).astype(np.float32)  # sensor noise, fresh every frame
        frames[i] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


# ----------------------------------------------------------------------------- language


def caption(actor: Actor, rng: np.random.Generator) -> str:
    """One caption of an actor, from a random template with random synonyms."""
    template = str(rng.choice(_TEMPLATES))
    return template.format(size=rng.choice(_SIZE_WORDS[actor.size]), color=actor.color,
                           shape=rng.choice(_SHAPE_WORDS[actor.shape]), verb=rng.choice(_VERBS[ACTIONS[actor.action]]))


def _captions(actor: Actor, rng: np.random.Generator, count: int) -> list[str]:
    found: list[str] = []
    for _ in range(count * 10):
        c = caption(actor, rng)
        if c not in found:
            found.append(c)
        if len(found) == count:
            break
    return found


#: The motion question of each reversed pair: (question with {obj}, answer for the pair's first action, second's).
_MOTION_QUESTIONS = {
    0: ("which way does the {obj} move?", "left", "right"),
    2: ("which way does the {obj} move?", "up", "down"),
    4: ("does the {obj} get bigger or smaller?", "bigger", "smaller"),
    6: ("which way does the {obj} turn?", "clockwise", "counterclockwise"),
    8: ("does the {obj} appear or disappear?", "appear", "disappear"),
}


def _questions(actor: Actor, video: str, rng: np.random.Generator) -> list[dict[str, object]]:
    """Colour, shape, size, action and motion questions about the acting shape, each with candidates and a type.

    The action and motion questions need more than one frame: their answers
    differ between a clip and its time-reversed twin, which look alike frame by frame.
    """
    name = ACTIONS[actor.action]
    doing = name.split()[0]
    colors = [actor.color] + list(rng.choice([c for c in COLORS if c != actor.color], 4, replace=False))
    others = [a for a in ACTIONS if a not in (name, ACTIONS[REVERSED[actor.action]])]
    actions = [name, ACTIONS[REVERSED[actor.action]]] + list(rng.choice(others, 3, replace=False))
    pair = min(actor.action, REVERSED[actor.action])
    motion, first, second = _MOTION_QUESTIONS[pair]
    qa = [
        (f"what colour is the shape that is {doing}?", actor.color, colors, "colour"),
        (f"what shape is the {actor.color} object?", actor.shape, list(SHAPES), "shape"),
        (f"is the {actor.color} {actor.shape} small or large?", actor.size, list(SIZES), "size"),
        (f"what is the {actor.color} {actor.shape} doing?", name, actions, "action"),
        (motion.format(obj=f"{actor.color} {actor.shape}"), first if actor.action == pair else second,
         [first, second], "motion"),
    ]
    out = []
    for question, answer, candidates, kind in qa:
        candidates = [str(c) for c in candidates]
        rng.shuffle(candidates)
        out.append({"video": video, "question": question, "answer": answer, "candidates": candidates, "type": kind})
    return out


# ----------------------------------------------------------------------------- world


@dataclasses.dataclass(frozen=True)
class World:
    """What :func:`make_world` wrote (see the module docstring for the layout)."""

    root: Path
    classes: tuple[str, ...]
    num_clips: int
    num_long: int
    num_ava: int
    num_images: int
    seconds: float

    def __str__(self) -> str:
        return (f"synthetic world in {self.root}: {self.num_clips} clips, {self.num_long} long videos, "
                f"{self.num_ava} multi-actor videos, {self.num_images} images, {len(self.classes)} classes "
                f"({self.seconds:.1f}s)")


#: A constant quantiser, not x264's default rate control: with ``crf`` libx264 sometimes wrote a different
#: bitstream for the same frames when a world was made again in the same process (2-8 clips in 40 in
#: our runs, one encoder thread), so worlds of one seed decoded to different pixels. ``qp`` 18 gives
#: files of the same size and quality (4.7 KB per 32 px clip, mean absolute error 5.4 grey levels against
#: the rendered frames, mostly the sensor noise) and gave the same bytes in every repeat we ran.
_ENCODER = {"qp": "18", "preset": "veryfast", "bf": "2"}


def _split_of(position: int, count: int) -> str:
    """Stratified split by position within a class: 15 % val, 15 % test (one each when possible), rest train."""
    n_test = max(1, round(0.15 * count)) if count >= 3 else 0
    n_val = max(1, round(0.15 * count)) if count >= 2 else 0
    n_train = count - n_val - n_test
    if position < n_train:
        return "train"
    return "val" if position < n_train + n_val else "test"


def _write_jsonl(path: Path, records: Sequence[dict[str, object]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _write_list(path: Path, rows: Sequence[tuple[str, int]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for video, label in rows:
            f.write(f"{video} {label}\n")


def make_world(out_dir: str | os.PathLike, num_videos: int = 600, seed: int = 0, size: int = 64,
               num_frames: int = 16, fps: int = 8, num_long: int | None = None, num_ava: int | None = None,
               num_images: int | None = None, progress: bool = False, noise: float = 5.0) -> World:
    """Generate the synthetic world into ``out_dir`` (created if needed; files are overwritten).

    Args:
        num_videos: action clips; classes are balanced (``num_videos / 10`` each).
        seed: everything (videos, captions, splits, questions) is a function of it.
        size: frame side in pixels (even; 64-112 keeps tiny models fast).
        num_frames: frames per clip (long videos have about 6x as many).
        fps: frame rate written into the files (timestamps in annotations use it).
        num_long, num_ava, num_images: defaults ``max(4, num_videos // 10)``,
            ``max(4, num_videos // 10)`` and ``max(10, num_videos // 5)``.
        progress: a progress bar over the action clips.
        noise: sigma of the sensor noise in grey levels, fresh every frame (0: none).
    """
    if size % 2 or size < 16:
        raise ValueError(f"size must be an even number >= 16 (h264 needs even sides), got {size}")
    if num_videos < len(ACTIONS):
        raise ValueError(f"num_videos must be at least {len(ACTIONS)} (one per class), got {num_videos}")
    if num_frames < 4:
        raise ValueError(f"num_frames must be >= 4, got {num_frames}")
    started = time.perf_counter()
    root = Path(out_dir)
    for sub in ("videos", "images", "localization", "ava"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    num_long = max(4, num_videos // 10) if num_long is None else num_long
    num_ava = max(4, num_videos // 10) if num_ava is None else num_ava
    num_images = max(10, num_videos // 5) if num_images is None else num_images
    (root / "classes.txt").write_text("\n".join(ACTIONS) + "\n", encoding="utf-8")

    # --- action clips, stratified splits
    labels = np.arange(num_videos) % len(ACTIONS)
    np.random.default_rng([seed, 0]).shuffle(labels)
    per_class = np.bincount(labels, minlength=len(ACTIONS))
    seen = np.zeros(len(ACTIONS), dtype=int)
    lists: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    captions: dict[str, list[dict[str, object]]] = {k: [] for k in lists}
    questions: dict[str, list[dict[str, object]]] = {k: [] for k in lists}
    actors: dict[str, list[tuple[str, Actor]]] = {k: [] for k in lists}
    facts = []
    from tqdm import tqdm

    for i, label in enumerate(tqdm(labels.tolist(), desc="rendering", unit="clip", disable=not progress)):
        rng = np.random.default_rng([seed, 1, i])
        split = _split_of(int(seen[label]), int(per_class[label]))
        seen[label] += 1
        actor = _random_actor(rng, label)
        distractor = _distractor(rng, actor) if rng.random() < 0.3 else None
        video = f"videos/clip_{i:05d}.mp4"
        write_video(root / video, render_clip(rng, [actor, distractor], size, num_frames, noise=noise), fps=fps,
                    options=_ENCODER)
        lists[split].append((video, label))
        captions[split].append({"video": video, "caption": _captions(actor, rng, 4)})
        questions[split].extend(_questions(actor, video, rng))
        actors[split].append((video, actor))
        facts.append({"video": video, "split": split, **actor.facts(),
                      "distractor": None if distractor is None else {"shape": distractor.shape,
                                                                     "color": distractor.color}})
    held_out = {ACTIONS.index(c) for c in HELD_OUT_CLASSES}
    for split in lists:
        _write_list(root / f"{split}.txt", lists[split])
        _write_jsonl(root / f"captions_{split}.jsonl", captions[split])
        _write_jsonl(root / f"qa_{split}.jsonl", questions[split])
        rows = [(v, lab) for v, lab in lists[split] if lab not in held_out] if split != "test" else \
            [(v, -1 if lab in held_out else lab) for v, lab in lists[split]]
        _write_list(root / f"openset_{split}.txt", rows)
    for split in ("val", "test"):
        _write_jsonl(root / f"mc_{split}.jsonl", _multiple_choice(actors[split], np.random.default_rng([seed, 2])))

    # --- image-text pairs: single frames of still shapes
    image_records = []
    for i in range(num_images):
        rng = np.random.default_rng([seed, 3, i])
        still = _random_actor(rng, int(rng.integers(len(ACTIONS))))
        still = dataclasses.replace(still, action=0, end=still.start)
        frame = render_clip(rng, [still], size, 1, noise=noise)[0]
        name = f"images/img_{i:05d}.png"
        _save_png(root / name, frame)
        words = f"a {rng.choice(_SIZE_WORDS[still.size])} {still.color} {rng.choice(_SHAPE_WORDS[still.shape])}"
        image_records.append({"video": name, "caption": [words, f"{words} on a noisy background",
                                                         f"a picture of a {still.color} {still.shape}"]})
    _write_jsonl(root / "image_text.jsonl", image_records)

    _make_long_videos(root / "localization", num_long, seed, size, num_frames, fps, noise)
    _make_ava(root / "ava", num_ava, seed, size, num_frames * 2, fps, noise)

    (root / "world.json").write_text(json.dumps({
        "seed": seed, "size": size, "num_frames": num_frames, "fps": fps, "classes": list(ACTIONS),
        "reversed": {ACTIONS[a]: ACTIONS[b] for a, b in REVERSED.items()}, "held_out_classes": list(HELD_OUT_CLASSES),
        "clips": facts,
    }, indent=1) + "\n", encoding="utf-8")
    return World(root, ACTIONS, num_videos, num_long, num_ava, num_images, time.perf_counter() - started)


def _distractor(rng: np.random.Generator, actor: Actor) -> Actor | None:
    """A small still shape of another colour, away from the actor's path (None if no room)."""
    for _ in range(20):
        still = _random_actor(rng, 0, exclude_color=actor.color, sizes=("small",))
        still = dataclasses.replace(still, end=still.start)
        reach = SIZES[actor.size] * 1.3 + SIZES["small"]
        near = min(math.dist(still.start[:2], p[:2]) for p in (actor.start, actor.end, actor.state(0.5)))
        if near > reach:
            return still
    return None


def _multiple_choice(items: Sequence[tuple[str, Actor]], rng: np.random.Generator) -> list[dict[str, object]]:
    """Pick the caption among five: the right one, its time-reversed twin, and three others."""
    records = []
    for video, actor in items:
        right = caption(actor, rng)
        twin = dataclasses.replace(actor, action=REVERSED[actor.action])
        wrong = [caption(twin, rng)]
        while len(wrong) < 4:
            action = int(rng.integers(len(ACTIONS)))
            if action in (actor.action, REVERSED[actor.action]):
                continue
            other = _random_actor(rng, action)
            wrong.append(caption(other, rng))
        candidates = [right, *wrong]
        rng.shuffle(candidates)
        records.append({"video": video, "question": "which caption describes the video?", "answer": right,
                        "candidates": candidates})
    return records


def _make_long_videos(folder: Path, count: int, seed: int, size: int, num_frames: int, fps: int,
                      noise: float = 5.0) -> None:
    """Long videos: 2-3 action segments (each a new shape) separated by still gaps.

    A video's segments come from different reversed pairs, so no two of its
    instances share a class or are each other's time-reversal: instances are
    separable both in time (still gaps) and in class.
    """
    database = {}
    pairs = sorted({tuple(sorted(p)) for p in REVERSED.items()})
    for i in range(count):
        rng = np.random.default_rng([seed, 4, i])
        segments = int(rng.integers(2, 4))
        chosen = rng.choice(len(pairs), segments, replace=False)
        actions = [pairs[int(k)][int(rng.integers(2))] for k in chosen]
        lengths = rng.integers(num_frames, num_frames * 3 // 2 + 1, segments)
        gaps = rng.integers(num_frames // 2, num_frames + 1, segments + 1)
        total = int(lengths.sum() + gaps.sum())
        schedule: list[list[tuple[Actor, float] | None]] = [[] for _ in range(total)]
        annotations = []
        cursor, previous = int(gaps[0]), None
        for s in range(segments):
            actor = _random_actor(rng, actions[s])
            n = int(lengths[s])
            if previous is not None:  # the last shape stays still in the gap before this segment
                for f in range(cursor - int(gaps[s]), cursor):
                    schedule[f] = [(previous, 1.0)]
            for f in range(n):
                schedule[cursor + f] = [(actor, f / (n - 1))]
            annotations.append({"segment": [round(cursor / fps, 3), round((cursor + n) / fps, 3)],
                                "label": ACTIONS[actor.action]})
            cursor += n
            previous = actor
            cursor += int(gaps[s + 1])
        for f in range(cursor - int(gaps[-1]), total):
            schedule[f] = [(previous, 1.0)]
        name = f"long_{i:05d}"
        frames = render_clip(rng, [], size, total, schedule=schedule, noise=noise)
        write_video(folder / f"{name}.mp4", frames, fps=fps, options=_ENCODER)
        database[name] = {"duration": round(total / fps, 3), "subset": "validation" if i % 4 == 3 else "training",
                          "fps": fps, "annotations": annotations}
    (folder / "activitynet.json").write_text(json.dumps({"version": "internvideo-synthetic", "database": database},
                                                        indent=1) + "\n", encoding="utf-8")


def _make_ava(folder: Path, count: int, seed: int, size: int, num_frames: int, fps: int,
              noise: float = 5.0) -> None:
    """Two shapes doing two different actions at once, one in each half of the frame, a box row per visible frame.

    Different actions in one clip make a box-agnostic predictor (one set of
    scores per clip) give each person the other's action too, so frame-mAP
    rewards reading the right box. Also writes ``label_map.pbtxt`` (AVA's
    label map format, ids 1-10).
    """
    rows: dict[str, list[list[object]]] = {"train": [], "val": []}
    for i in range(count):
        rng = np.random.default_rng([seed, 5, i])
        first = int(rng.integers(len(ACTIONS)))
        second = (first + 1 + int(rng.integers(len(ACTIONS) - 1))) % len(ACTIONS)
        left = _random_actor(rng, first, region=(0.0, 0.0, 0.5, 1.0), sizes=("small",))
        right = _random_actor(rng, second, region=(0.5, 0.0, 1.0, 1.0), exclude_color=left.color, sizes=("small",))
        name = f"ava_{i:05d}"
        write_video(folder / f"{name}.mp4", render_clip(rng, [left, right], size, num_frames, noise=noise), fps=fps,
                    options=_ENCODER)
        split = "val" if i % 4 == 3 else "train"
        for f in range(num_frames):
            t = f / (num_frames - 1)
            for person, actor in enumerate((left, right)):
                state = actor.state(t)
                if state[4] < 0.25:  # (nearly) invisible: nothing to detect
                    continue
                x1, y1, x2, y2 = _box(actor, state)
                rows[split].append([name, round(f / fps, 4), round(x1, 4), round(y1, 4), round(x2, 4), round(y2, 4),
                                    actor.action + 1, person])
    for split, split_rows in rows.items():
        with open(folder / f"ava_{split}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(split_rows)
    (folder / "label_map.pbtxt").write_text(
        "".join(f'item {{\n  name: "{name}"\n  id: {k + 1}\n}}\n' for k, name in enumerate(ACTIONS)), encoding="utf-8")


def _save_png(path: Path, frame: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path, format="PNG")
