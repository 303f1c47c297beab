"""A self-contained HTML report per run: metadata, metrics against thresholds, charts (inline SVG) and
every failing case with its draft and the grader that failed it."""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#1f2328}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{border:1px solid #d0d7de;padding:.35rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}.pass{color:#1a7f37;font-weight:600}
.fail{color:#cf222e;font-weight:600}pre{white-space:pre-wrap;background:#f6f8fa;padding:.5rem;margin:0;
font-size:.8rem}.meta td:first-child{width:12rem;color:#57606a}svg{background:#fff;border:1px solid #d0d7de}
details{margin:.3rem 0}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return escape(str(value))


def _line_chart(points: list[tuple[float, float]], title: str) -> str:
    """Reliability diagram: predicted (x) vs observed (y) on the unit square, with the diagonal."""
    size, pad = 320, 36
    scale = lambda v: pad + v * (size - 2 * pad)  # noqa: E731
    path = " ".join(f"{scale(x):.1f},{size - scale(y):.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{scale(x):.1f}" cy="{size - scale(y):.1f}" r="3" fill="#0969da"/>' for x, y in points)
    return (
        f'<svg width="{size}" height="{size}" role="img" aria-label="{escape(title)}">'
        f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#8c959f" stroke-dasharray="4"/>'
        f'<polyline points="{path}" fill="none" stroke="#0969da" stroke-width="2"/>{dots}'
        f'<text x="{size / 2}" y="{size - 8}" text-anchor="middle" font-size="11">predicted</text>'
        f'<text x="12" y="{size / 2}" font-size="11" transform="rotate(-90 12 {size / 2})" text-anchor="middle">'
        f"observed</text></svg>"
    )


def _histogram(won: list[int], lost: list[int], title: str) -> str:
    width, height, pad = 420, 220, 30
    top = max([*won, *lost, 1])
    bar = (width - 2 * pad) / len(won) / 2
    bars = []
    for i, (w, l_) in enumerate(zip(won, lost, strict=True)):
        x = pad + i * 2 * bar
        for offset, count, colour in ((0, l_, "#cf222e"), (bar, w, "#1a7f37")):
            h = (height - 2 * pad) * count / top
            bars.append(
                f'<rect x="{x + offset:.1f}" y="{height - pad - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{count}</title></rect>'
            )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">{"".join(bars)}'
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="11">predicted probability '
        f"(0 to 1); green won, red lost</text></svg>"
    )


def render_report(record: dict[str, Any], suite: Any, result: Any) -> str:
    status = '<span class="pass">PASSED</span>' if record["passed"] else '<span class="fail">FAILED</span>'
    meta_rows = "".join(f"<tr><td>{escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in record["meta"].items())
    thresholds = {t["metric"]: t for t in record["thresholds"]}
    metric_rows = []
    for key, value in record["metrics"].items():
        t = thresholds.get(key)
        verdict = ""
        if t is not None:
            ok = value is not None and (value >= t["value"] if t["op"] == ">=" else value <= t["value"])
            verdict = f'<span class="{"pass" if ok else "fail"}">{t["op"]} {t["value"]}</span>'
        metric_rows.append(f"<tr><td>{escape(key)}</td><td>{_fmt(value)}</td><td>{verdict}</td></tr>")
    charts = ""
    if result.charts.get("calibration"):
        points = [(c["predicted"], c["observed"]) for c in result.charts["calibration"]]
        hist = result.charts["histogram"]
        lift_rows = "".join(
            f"<tr><td>{g}</td><td>{v['n']}</td><td>{_fmt(v['win_rate'])}</td><td>{_fmt(v['lift'])}</td></tr>"
            for g, v in result.charts["lift"].items()
        )
        charts = (
            "<h2>Calibration curve (holdout)</h2>"
            + _line_chart(points, "calibration curve")
            + "<h2>Score histogram by outcome (holdout)</h2>"
            + _histogram(hist["won"], hist["lost"], "histogram")
            + "<h2>Lift per rubric grade</h2><table><tr><th>grade</th><th>leads</th><th>win rate</th><th>lift</th>"
            f"</tr>{lift_rows}</table>"
        )
    if result.charts.get("confusion"):
        table = result.charts["confusion"]
        head = "".join(f"<th>{escape(c)}</th>" for c in table["columns"])
        body = "".join(
            f"<tr><td>{escape(label)}</td>"
            + "".join(f"<td>{counts.get(c, 0)}</td>" for c in table["columns"])
            + "</tr>"
            for label, counts in table["rows"].items()
        )
        charts += (
            "<h2>Confusion: expected grade (rows) against the grade given (columns)</h2>"
            f"<table><tr><th>expected</th>{head}</tr>{body}</table>"
        )
    failing = [c for c in result.cases if not c.passed]
    failing_rows = "".join(
        f"<tr><td>{escape(c.id)}</td><td>{escape(c.detail)}<br><small>{escape(c.rationale)}</small></td>"
        f"<td>{escape(', '.join(c.extra.get('failing_graders', [])) or '')}</td>"
        f"<td><pre>{escape(_draft_text(c.extra.get('draft')))}</pre></td></tr>"
        for c in failing
    )
    all_rows = "".join(
        f'<tr><td>{escape(c.id)}</td><td class="{"pass" if c.passed else "fail"}">{"pass" if c.passed else "fail"}'
        f"</td><td>{escape(c.detail)}</td><td><small>{escape(c.rationale)}</small></td></tr>"
        for c in result.cases
    )
    failures = "".join(
        f"<li>{escape(f['metric'])}: {_fmt(f['actual'])} (needs {escape(f['op'])} {f['threshold']})</li>"
        for f in record["failures"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>revloop eval {escape(record["run_id"])}</title>
<style>{STYLE}</style></head><body>
<h1>Eval run {escape(record["run_id"])}: {escape(record["suite"])} {status}</h1>
<p>{escape(suite.description)}</p>
{f'<ul class="fail">{failures}</ul>' if failures else ""}
<h2>Run</h2><table class="meta">{meta_rows}</table>
<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>threshold</th></tr>{"".join(metric_rows)}</table>
{charts}
<h2>Failing cases ({len(failing)})</h2>
{
        "<p>None.</p>"
        if not failing
        else "<table><tr><th>case</th><th>why</th><th>failing graders</th><th>draft</th></tr>"
        + failing_rows
        + "</table>"
    }
<details><summary>All {len(result.cases)} cases</summary>
<table><tr><th>case</th><th>verdict</th><th>detail</th><th>rationale</th></tr>{all_rows}</table></details>
<script type="application/json" id="run">{escape(json.dumps(record, default=str))}</script>
</body></html>"""


def _draft_text(draft: dict[str, Any] | None) -> str:
    if not draft:
        return ""
    return f"Subject: {draft.get('subject', '')}\n\n{draft.get('body', '')}"
