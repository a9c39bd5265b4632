"""The demo's results: one table (terminal and markdown) and results.md."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


# ----------------------------------------------------------------------------- results table

#: The open-set rows: the paper's protocol (DEAR's), see ``pipeline._openset_stage``; every score from one head.
_OPENSET_MODEL = "VideoMAE fine-tuned on the known classes (EDL head, DEAR protocol)"
_OPENSET_SCORES = {"uncertainty": "EDL uncertainty", "msp": "max softmax prob.", "energy": "energy",
                   "max_logit": "max logit"}

#: (key in the results, paper task family, model, metric, value getter, chance getter)
_ROWS: tuple[tuple[str, str, str, str, str, Callable[[dict], float], Callable[[dict], float]], ...] = (
    ("recognition_videomae", "Action recognition", "VideoMAE ViT, supervised {init}", "top-1",
     "recog. VideoMAE", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_videomae_compare", "Action recognition", "VideoMAE ViT, supervised {init}", "top-1",
     "recog. VideoMAE ({init})", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_multimodal", "Action recognition", "multimodal encoder, linear probe", "top-1",
     "recog. multimodal", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_multimodal_finetuned", "Action recognition", "multimodal encoder, fine-tuned with its own head",
     "top-1", "recog. multimodal (fine-tuned)", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_late_fusion", "Action recognition", "both, late fusion (concatenated features)", "top-1",
     "recog. late fusion", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_fused_gated", "Action recognition", "both, cross-model attention (gated, ours)", "top-1",
     "recog. CMA (gated)", lambda r: r["top1"], lambda r: r["chance"]),
    ("recognition_fused", "Action recognition", "InternVideo: both, cross-model attention (paper)", "top-1",
     "recog. fused", lambda r: r["top1"], lambda r: r["chance"]),
    ("zeroshot", "Zero-shot action recognition", "multimodal (class names as prompts)", "top-1",
     "zero-shot", lambda r: r["top1"], lambda r: r["chance"]),
    ("retrieval", "Video-text retrieval", "multimodal, text -> video", "R@1",
     "t2v R@1", lambda r: r["t2v"]["R@1"], lambda r: r["chance_R@1"]),
    ("retrieval", "Video-text retrieval", "multimodal, video -> text", "R@1",
     "v2t R@1", lambda r: r["v2t"]["R@1"], lambda r: r["chance_R@1"]),
    ("multiple_choice", "Zero-shot multiple choice", "multimodal (5 captions per clip)", "accuracy",
     "MC acc.", lambda r: r["accuracy"], lambda r: r["chance"]),
    *(("openset", "Open-set recognition", f"{_OPENSET_MODEL}, {name}", "AUROC known vs held-out actions",
       f"openset {score} AUROC", lambda r, s=score: r["scores"][s]["auroc"], lambda r: 50.0)
      for score, name in _OPENSET_SCORES.items()),
    ("openset", "Open-set recognition", _OPENSET_MODEL, "closed-set top-1 (known classes)", "openset closed-set top-1",
     lambda r: r["scores"]["msp"]["closed_set_accuracy"], lambda r: 100.0 / r["num_known_classes"]),
)


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The demo's one results table: one row per number, each with its chance level (percent)."""
    rows = []
    for key, family, model, metric, short, value, chance in _ROWS:
        if key in results:
            r = results[key]
            rows.append({"family": family, "model": model.format(init=r.get("init", "")), "metric": metric,
                         "short": short.format(init=r.get("init", "")),
                         "value": round(float(value(r)), 1), "chance": round(float(chance(r)), 1)})
    return rows


# ----------------------------------------------------------------------------- the paper's claims, in miniature

#: "Clearly above chance" for claim (d): zero-shot top-1 at least this many times chance, retrieval R@1 too.
ZEROSHOT_FACTOR, RETRIEVAL_FACTOR = 2.0, 10.0
#: Open-set claim: EDL-uncertainty and maximum-softmax AUROC at least this (percent; chance 50).
OPENSET_AUROC = 65.0
#: Claim (b): the MAE's error on the hidden patches that hold the shape, as a fraction of the flat baseline's.
RECONSTRUCTION_RATIO = 0.75


def claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's claims (a)-(d), each with the numbers the demo measured and a verdict (``shown`` bool).

    (a) masked pretraining then supervised fine-tuning beats supervised training from scratch (same steps);
    (b) the masked autoencoder recovers hidden content: on the hidden patches that hold the shape (the quarter
        with the most pixel variance), its error is at most ``RECONSTRUCTION_RATIO`` of a flat prediction (each
        hidden patch the mean colour of its frame's visible patches: what "predicting grey" scores);
    (c) cross-model attention beats each single stream and matches or beats late fusion;
    (d) zero-shot recognition and retrieval clearly above chance (``ZEROSHOT_FACTOR``, ``RETRIEVAL_FACTOR``);
    (e) open-set recognition: the backbone fine-tuned on the known classes with the evidential head flags the
        held-out actions, EDL-uncertainty and maximum-softmax AUROC both at least ``OPENSET_AUROC``.
    Claims whose numbers a run did not compute are left out.
    """
    out = []
    runs = [results[k] for k in ("recognition_videomae", "recognition_videomae_compare") if k in results]
    by_init = {r.get("init"): r["top1"] for r in runs}
    if {"from scratch", "from the MAE weights"} <= by_init.keys():
        mae, scratch = by_init["from the MAE weights"], by_init["from scratch"]
        out.append({"claim": "(a) masked pretraining -> fine-tuning beats training from scratch (same steps)",
                    "evidence": f"VideoMAE test top-1: from the MAE {mae:.1f} %, from scratch {scratch:.1f} %",
                    "shown": mae > scratch})
    if "reconstruction" in results:
        r = results["reconstruction"]
        ratio = r["mse_content"] / max(r["baseline_mse_content"], 1e-12)
        out.append({"claim": "(b) the MAE recovers hidden content (shape and position)",
                    "evidence": f"hidden patches holding the shape: MSE {r['mse_content']:.4f} against "
                                f"{r['baseline_mse_content']:.4f} for a flat prediction ({100 * ratio:.0f} %; "
                                f"shown at <= {100 * RECONSTRUCTION_RATIO:.0f} %); all hidden patches "
                                f"{r['mse_hidden']:.4f} against {r['baseline_mse_hidden']:.4f}",
                    "shown": ratio <= RECONSTRUCTION_RATIO})
    keys = ("recognition_fused", "recognition_videomae", "recognition_multimodal", "recognition_late_fusion")
    if all(k in results for k in keys):
        fused, mae, mm, late = (results[k]["top1"] for k in keys)
        out.append({"claim": "(c) cross-model attention beats each stream and matches or beats late fusion",
                    "evidence": f"top-1: CMA {fused:.1f} %, VideoMAE {mae:.1f} %, multimodal {mm:.1f} %, "
                                f"late fusion {late:.1f} %",
                    "shown": fused > max(mae, mm) and fused >= late})
    if "zeroshot" in results and "retrieval" in results:
        z, r = results["zeroshot"], results["retrieval"]
        t2v, v2t, chance = r["t2v"]["R@1"], r["v2t"]["R@1"], r["chance_R@1"]
        out.append({"claim": "(d) zero-shot recognition and retrieval clearly above chance",
                    "evidence": f"zero-shot top-1 {z['top1']:.1f} % (chance {z['chance']:.1f}, shown at "
                                f">= {ZEROSHOT_FACTOR:.0f}x); R@1 t2v {t2v:.1f} %, v2t {v2t:.1f} % (chance "
                                f"{chance:.1f}, shown at >= {RETRIEVAL_FACTOR:.0f}x)",
                    "shown": z["top1"] >= ZEROSHOT_FACTOR * z["chance"] and min(t2v, v2t) >= RETRIEVAL_FACTOR * chance})
    if "openset" in results:
        o = results["openset"]["scores"]
        u, msp = o["uncertainty"]["auroc"], o["msp"]["auroc"]
        out.append({"claim": "(e) open-set: the backbone fine-tuned on the known classes flags held-out actions",
                    "evidence": f"test AUROC: EDL uncertainty {u:.1f} %, max softmax {msp:.1f} % (chance 50, shown "
                                f"at >= {OPENSET_AUROC:.0f} %); closed-set top-1 {o['msp']['closed_set_accuracy']:.1f} "
                                f"% over {results['openset']['num_known_classes']} known classes",
                    "shown": min(u, msp) >= OPENSET_AUROC})
    return out


def claims_markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = ["## The paper's claims, in miniature", "", "| claim | measured | verdict |", "|---|---|---|"]
    lines += [f"| {c['claim']} | {c['evidence']} | {'shown' if c['shown'] else '**not shown**'} |" for c in rows]
    return lines + [""]


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
        *claims_markdown(report.get("claims", [])),
        f"Wall time: {duration(report['wall_seconds'])}, CPU time: {duration(report.get('cpu_seconds', 0.0))} "
        f"({report['threads']} compute thread(s), each video decoded once, in process; "
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
        same = [r["table"][i] for r in reports]
        if any(x["short"] != row["short"] for x in same):
            raise ValueError(f"the seeds' tables differ at row {i}: {sorted({x['short'] for x in same})}")
        values = [float(x["value"]) for x in same]
        # A baseline computed from the data (nearest caption, most frequent answer...) differs between seeds: its mean.
        chances = [float(x["chance"]) for x in same]
        models = list(dict.fromkeys(x["model"] for x in same))
        rows.append({k: row[k] for k in ("family", "metric", "short")} | spread(values)
                    | {"model": " / ".join(models), "chance": round(statistics.fmean(chances), 2),
                       "chance_values": chances})
    stages = [{"stage": s["stage"], "seconds": spread([float(r["stages"][i]["seconds"]) for r in reports]),
               "cpu_seconds": spread([float(r["stages"][i].get("cpu_seconds", 0.0)) for r in reports])}
              for i, s in enumerate(reports[0]["stages"])]
    verdicts = [{"claim": c["claim"], "shown": sum(bool(r["claims"][i]["shown"]) for r in reports),
                 "of": len(reports)} for i, c in enumerate(reports[0].get("claims", []))]
    return {"seeds": [r["seed"] for r in reports], "table": rows, "stages": stages, "claims": verdicts,
            "wall_seconds": spread([float(r["wall_seconds"]) for r in reports]),
            "cpu_seconds": spread([float(r.get("cpu_seconds", 0.0)) for r in reports])}


def seeds_markdown(summary: dict[str, Any]) -> str:
    """The mean +- standard deviation table of :func:`aggregate_seeds` (min-max in brackets)."""
    n = len(summary["seeds"])
    lines = [f"# InternVideo demo over {n} seeds ({', '.join(map(str, summary['seeds']))})", "",
             "| Task family (paper) | Model | Metric | Score (%), mean ± std (min-max) | Chance or baseline (%), mean |",
             "|---|---|---|---:|---:|"]
    lines += [f"| {r['family']} | {r['model']} | {r['metric']} | {r['mean']:.1f} ± {r['std']:.1f} "
              f"({r['min']:.1f}-{r['max']:.1f}) | {r['chance']:.1f} |" for r in summary["table"]]
    if summary.get("claims"):
        lines += ["", "| claim | shown in |", "|---|---:|"]
        lines += [f"| {c['claim']} | {c['shown']} of {c['of']} seeds |" for c in summary["claims"]]
    w, c = summary["wall_seconds"], summary["cpu_seconds"]
    lines += ["", f"Per run: wall {duration(w['mean'])} ± {w['std']:.0f} s, CPU {duration(c['mean'])} ± "
                  f"{c['std']:.0f} s.", "", "| stage | wall (mean ± std) | CPU (mean ± std) |", "|---|---:|---:|"]
    lines += [f"| {s['stage']} | {duration(s['seconds']['mean'])} ± {s['seconds']['std']:.0f} s | "
              f"{duration(s['cpu_seconds']['mean'])} ± {s['cpu_seconds']['std']:.0f} s |" for s in summary["stages"]]
    return "\n".join(lines + [""])
