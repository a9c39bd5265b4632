"""The demo's results: one table (terminal and markdown) and results.md."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


# ----------------------------------------------------------------------------- results table

#: (key in the results, paper task family, model, metric, value getter, chance getter)
_ROWS: tuple[tuple[str, str, str, str, str, Callable[[dict], float], Callable[[dict], float]], ...] = (
    ("recognition_videomae", "Action recognition", "VideoMAE ViT, supervised {init}", "top-1",
     "recog. VideoMAE", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_multimodal", "Action recognition", "multimodal encoder, linear probe", "top-1",
     "recog. multimodal", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_fused", "Action recognition", "InternVideo: both, cross-model attention", "top-1",
     "recog. fused", lambda r: r["top1"], lambda r: r["chance"]),
    ("zeroshot", "Zero-shot action recognition", "multimodal (class names as prompts)", "top-1",
     "zero-shot", lambda r: r["top1"], lambda r: r["chance"]),
    ("retrieval", "Video-text retrieval", "multimodal, text -> video", "R@1",
     "t2v R@1", lambda r: r["t2v"]["R@1"], lambda r: r["chance_R@1"]),
    ("retrieval", "Video-text retrieval", "multimodal, video -> text", "R@1",
     "v2t R@1", lambda r: r["v2t"]["R@1"], lambda r: r["chance_R@1"]),
    ("multiple_choice", "Zero-shot multiple choice", "multimodal (5 captions per clip)", "accuracy",
     "MC acc.", lambda r: r["accuracy"], lambda r: r["chance"]),
)


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's one results table: one row per number, each with its chance level (percent)."""
    rows = []
    for key, family, model, metric, short, value, chance in _ROWS:
        if key in results:
            r = results[key]
            rows.append({"family": family, "model": model.format(init=r.get("init", "")), "metric": metric,
                         "short": short,
                         "value": round(float(value(r)), 1), "chance": round(float(chance(r)), 1)})
    return rows


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The table as plain text (terminal) or GitHub markdown."""
    head = ("Task family (paper)", "Model", "Metric", "Score (%)", "Chance (%)")
    cells = [(r["family"], r["model"], r["metric"], f"{r['value']:.1f}", f"{r['chance']:.1f}") for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 2) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(x[i]) for x in [head, *cells]) for i in range(len(head))]

    def line(c):
        return "  ".join(v.rjust(w) if i >= 3 else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths)))

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *[line(c) for c in cells]])


def results_markdown(report: dict[str, Any], img_size: int) -> str:
    p = report["preset"]
    d = report["details"]
    lines = [
        f"# InternVideo demo results ({p['name']} preset, seed {report['seed']})", "",
        f"Synthetic world: {p['num_videos']} clips of 10 actions (five time-reversed pairs: only motion tells a "
        f"pair apart), {img_size} px, evaluated on the test split "
        f"({d['recognition_videomae']['num_samples'] if 'recognition_videomae' in d else '?'} clips). "
        "Every model is trained from scratch by the demo. Chance is what a model guessing uniformly would score.",
        "", format_table(report["table"], markdown=True), "",
        f"Wall time: {duration(report['wall_seconds'])} ({report['threads']} compute thread(s), "
        f"{report['data_workers']} video-decoding process(es)).", "",
        "| stage | what | time | summary |", "|---|---|---:|---|",
    ]
    lines += [f"| {s['stage']} | {s['title']} | {duration(s['seconds'])} | {s['summary']} |" for s in report["stages"]]
    lines += ["", "Notes on the choices made at this scale: docs/demo.md.", ""]
    return "\n".join(lines)


