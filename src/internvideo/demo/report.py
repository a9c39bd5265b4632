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


def _load(report: dict[str, Any]) -> str:
    start, end = report.get("load_average_at_start"), report.get("load_average")
    if not start or not end:
        return "?"
    return f"{start[0]:.2f} at the start, {end[0]:.2f} at the end (1-minute)"


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
        f"Wall time: {duration(report['wall_seconds'])}, CPU time: {duration(report.get('cpu_seconds', 0.0))} "
        f"({report['threads']} compute thread(s), {report['data_workers']} video-decoding process(es); "
        f"{report.get('cpu_count', '?')} cores, load average {_load(report)}).", "",
        "| stage | what | wall | CPU | summary |", "|---|---|---:|---:|---|",
    ]
    lines += [f"| {s['stage']} | {s['title']} | {duration(s['seconds'])} | {duration(s.get('cpu_seconds', 0.0))} | "
              f"{s['summary']} |" for s in report["stages"]]
    lines += ["", "Notes on the choices made at this scale: docs/demo.md.", ""]
    return "\n".join(lines)




# ----------------------------------------------------------------------------- several seeds


def aggregate_seeds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (sample standard deviation, min, max) of every table row and time over seeded runs."""
    import statistics

    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": round(statistics.fmean(values), 2),
                "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
                "min": round(min(values), 2), "max": round(max(values), 2), "values": values}

    first = reports[0]["table"]
    rows = []
    for i, row in enumerate(first):
        values = [float(r["table"][i]["value"]) for r in reports]
        rows.append({k: row[k] for k in ("family", "model", "metric", "short", "chance")} | spread(values))
    stages = [{"stage": s["stage"], "seconds": spread([float(r["stages"][i]["seconds"]) for r in reports]),
               "cpu_seconds": spread([float(r["stages"][i].get("cpu_seconds", 0.0)) for r in reports])}
              for i, s in enumerate(reports[0]["stages"])]
    return {"seeds": [r["seed"] for r in reports], "table": rows, "stages": stages,
            "wall_seconds": spread([float(r["wall_seconds"]) for r in reports]),
            "cpu_seconds": spread([float(r.get("cpu_seconds", 0.0)) for r in reports])}


def seeds_markdown(summary: dict[str, Any]) -> str:
    """The mean +- standard deviation table of :func:`aggregate_seeds` (min-max in brackets)."""
    n = len(summary["seeds"])
    lines = [f"# InternVideo demo over {n} seeds ({', '.join(map(str, summary['seeds']))})", "",
             "| Task family (paper) | Model | Metric | Score (%), mean ± std (min-max) | Chance (%) |",
             "|---|---|---|---:|---:|"]
    lines += [f"| {r['family']} | {r['model']} | {r['metric']} | {r['mean']:.1f} ± {r['std']:.1f} "
              f"({r['min']:.1f}-{r['max']:.1f}) | {r['chance']:.1f} |" for r in summary["table"]]
    w, c = summary["wall_seconds"], summary["cpu_seconds"]
    lines += ["", f"Per run: wall {duration(w['mean'])} ± {w['std']:.0f} s, CPU {duration(c['mean'])} ± "
                  f"{c['std']:.0f} s.", "", "| stage | wall (mean ± std) | CPU (mean ± std) |", "|---|---:|---:|"]
    lines += [f"| {s['stage']} | {duration(s['seconds']['mean'])} ± {s['seconds']['std']:.0f} s | "
              f"{duration(s['cpu_seconds']['mean'])} ± {s['cpu_seconds']['std']:.0f} s |" for s in summary["stages"]]
    return "\n".join(lines + [""])
