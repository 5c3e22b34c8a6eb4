"""The evaluation report folder: metrics.csv, summary.json, table.md, index.html, plots/."""

from __future__ import annotations

import csv
import html
import json
import math
import os
from pathlib import Path

from .evaluate import INPUT_METHOD, EvalResult, summarise
from .fullref import CHANNEL_CONVENTIONS
from .fullref import __doc__ as FULLREF_CONVENTION
from .metrics import BY_KEY


def _fmt(value: float | None, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key == "id_kept":
        return f"{100.0 * value:.1f}%"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _best(summary: dict[str, dict[str, float]], key: str) -> set[str]:
    """Methods (not the LQ input) with the best mean of ``key``."""
    values = {m: v[key] for m, v in summary.items() if m != INPUT_METHOD and key in v and math.isfinite(v[key])}
    if not values:
        return set()
    best = (max if BY_KEY[key].higher_better else min)(values.values())
    return {m for m, v in values.items() if v == best}


def write_report(result: EvalResult, out: Path) -> dict:
    """Write the report files into ``out`` (created); returns the summary.json content."""
    out.mkdir(parents=True, exist_ok=True)
    keys = result.metric_keys()
    summary = summarise(result)
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "name", *keys, "file", "reference"])
        for row in result.rows:
            writer.writerow([row["method"], row["name"], *[repr(float(row[k])) if k in row else "" for k in keys],
                             row["file"], row["reference"]])
    content = {
        "methods": {m: str(p) for m, p in result.methods.items()},
        "reference": result.reference_kind,
        "means": summary,
        "metrics": {k: BY_KEY[k].description for k in [*keys, *{k for v in result.per_method.values() for k in v}]},
        "identity_embedder": result.embedder,
        "skipped": result.skipped,
        "problems": result.problems,
        "images_per_second": result.throughput,
        "psnr_ssim_convention": " ".join(FULLREF_CONVENTION.split()),
        "psnr_ssim_channel": result.psnr_channel,
    }
    (out / "summary.json").write_text(json.dumps(content, indent=1, sort_keys=True, allow_nan=True) + "\n",
                                      encoding="utf-8")
    (out / "table.md").write_text(_table(result, summary, keys), encoding="utf-8")
    plots = _plots(result, keys, out)
    (out / "index.html").write_text(_html(result, summary, keys, out, plots), encoding="utf-8")
    return content


def _table(result: EvalResult, summary: dict[str, dict[str, float]], keys: list[str]) -> str:
    """Paper Table 1 layout: a row per metric, a column per method, the best in bold."""
    methods = list(result.methods)
    columns = [k for k in keys] + sorted({k for v in result.per_method.values() for k in v})
    lines = ["| Metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for key in columns:
        best = _best(summary, key)
        cells = []
        for method in methods:
            text = _fmt(summary[method].get(key), key)
            cells.append(f"**{text}**" if method in best else text)
        lines.append(f"| {BY_KEY[key].label} | " + " | ".join(cells) + " |")
    lines.append("| Images | " + " | ".join(str(int(summary[m]["images"])) for m in methods) + " |")
    notes = [f"\nIdentity: {result.embedder.get('name')} ({result.embedder.get('threshold_source')}); reference: "
             f"{result.reference_kind.upper()}. "
             + (f"PSNR/SSIM on {CHANNEL_CONVENTIONS[result.psnr_channel]}. " if "psnr" in keys else "")
             + "Best value per row in bold"
             + (f"; '{INPUT_METHOD}' is the LQ input, not ranked." if INPUT_METHOD in methods else ".")]
    for key, reason in sorted(result.skipped.items()):
        notes.append(f"- {key} skipped: {reason}")
    return "\n".join(lines + notes) + "\n"


def _plots(result: EvalResult, keys: list[str], out: Path) -> list[str]:
    """One histogram per metric (a series per method) when matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        result.skipped.setdefault("plots", "matplotlib is not installed (pip install matplotlib)")
        return []
    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    names = []
    for key in keys:
        figure, axes = plt.subplots(figsize=(5, 3.2), dpi=100)
        for method in result.methods:
            values = [row[key] for row in result.rows
                      if row["method"] == method and key in row and math.isfinite(row[key])]
            if values:
                axes.hist(values, bins=20, alpha=0.5, label=method)
        axes.set_xlabel(BY_KEY[key].label)
        axes.set_ylabel("images")
        axes.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / f"{key}.png")
        plt.close(figure)
        names.append(f"plots/{key}.png")
    return names


def _html(result: EvalResult, summary: dict, keys: list[str], out: Path, plots: list[str]) -> str:
    """Per image: LQ | each method | GT, values under each, worst identity (lowest similarity
    of any method) first. Images are linked by relative path, not copied."""
    by_name: dict[str, dict[str, dict]] = {}
    for row in result.rows:
        by_name.setdefault(row["name"], {})[row["method"]] = row

    def worst(name: str) -> float:
        values = [r.get("id_similarity", math.inf) for m, r in by_name[name].items() if m != INPUT_METHOD]
        return min(values, default=math.inf)

    def img(path: str, caption: str) -> str:
        src = html.escape(os.path.relpath(path, out).replace(os.sep, "/"))
        return f'<td><img src="{src}" loading="lazy"><div>{caption}</div></td>'

    references = {row["name"]: row for row in result.rows}
    parts = ["<!doctype html><meta charset=utf-8><title>AuthFace evaluation</title><style>"
             "body{font-family:sans-serif}td{vertical-align:top;font-size:12px}img{width:192px;height:192px;"
             "object-fit:contain}table.t td,table.t th{border:1px solid #ccc;padding:2px 6px}</style>",
             "<h1>AuthFace evaluation</h1>", "<h2>Means</h2><table class=t><tr><th>metric</th>"]
    parts += [f"<th>{html.escape(m)}</th>" for m in result.methods] + ["</tr>"]
    for key in keys + sorted({k for v in result.per_method.values() for k in v}):
        best = _best(summary, key)
        parts.append(f"<tr><td>{html.escape(BY_KEY[key].label)}</td>")
        for m in result.methods:
            text = html.escape(_fmt(summary[m].get(key), key))
            parts.append(f"<td>{'<b>' + text + '</b>' if m in best else text}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    if result.skipped:
        parts.append("<h2>Skipped</h2><ul>" + "".join(
            f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in sorted(result.skipped.items())) + "</ul>")
    if result.problems:
        parts.append("<h2>Problems</h2><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in result.problems)
                     + "</ul>")
    parts += [f'<img src="{p}" style="width:auto;height:auto">' for p in plots]
    parts.append("<h2>Images, worst identity first</h2><table>")
    lq_dir = result.methods.get(INPUT_METHOD)
    for name in sorted(by_name, key=worst):
        cells = []
        if lq_dir is None and result.reference_kind == "lq":
            cells.append(img(references[name]["reference"], "LQ (reference)"))
        for method in result.methods:
            row = by_name[name].get(method)
            if row is None:
                cells.append(f"<td>{html.escape(method)}: –</td>")
                continue
            values = "<br>".join(f"{html.escape(BY_KEY[k].label)} {html.escape(_fmt(row.get(k), k))}"
                                 for k in keys if k in row)
            cells.append(img(row["file"], f"<b>{html.escape(method)}</b><br>{values}"))
        if result.reference_kind == "gt":
            cells.append(img(references[name]["reference"], "GT"))
        parts.append(f"<tr><td>{html.escape(name)}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
    return "\n".join(parts) + "\n"
