"""The closed-loop report as one page a marketing lead can forward: the headline numbers against the
previous period, one chart comparing reasons side by side, then the table (lost deals and
disqualified leads, and by original source).

Self-contained: no script, no font, no image or style sheet from elsewhere; the chart is inline
SVG. It fits a laptop screen (the table scrolls inside its own box if a portal has very long
reason names) and prints on A4 or Letter.
"""

from __future__ import annotations

from html import escape

from handoff_worker.domain.closed_loop import Funnel, LossKind
from handoff_worker.handoff.report import (
    KIND_NAMES,
    Report,
    change_text,
    funnel_cells,
    money,
    render_csv,
    render_json,
    render_table,
    source_name,
)

# The chart's three bars per reason, in the funnel's order.
SERIES = (
    ("recycled", "Recycled", "#2563eb"),
    ("came_back", "Came back", "#16a34a"),
    ("won", "Won", "#b45309"),
)

STYLE = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#111827;
margin:0;background:#f9fafb}
main{max-width:72rem;margin:0 auto;padding:1.5rem 2rem}
h1{font-size:1.6rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:1.75rem 0 .5rem}
.sub{color:#4b5563;margin:0 0 1.25rem}
.headline{display:grid;grid-template-columns:repeat(5,minmax(0,1fr));gap:.75rem}
.figure{background:#fff;border:1px solid #e5e7eb;border-radius:.5rem;padding:.75rem 1rem}
.figure .label{color:#4b5563;font-size:.85rem}
.figure .value{font-size:1.8rem;font-weight:650;line-height:1.2}
.figure .change{font-size:.85rem;color:#374151}
.chart{background:#fff;border:1px solid #e5e7eb;border-radius:.5rem;padding:.75rem}
.chart svg{display:block;width:100%;height:auto}
.table-box{overflow-x:auto;background:#fff;border:1px solid #e5e7eb;border-radius:.5rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.4rem .6rem;text-align:right;border-bottom:1px solid #f3f4f6;white-space:nowrap}
th:first-child,td:first-child{text-align:left;white-space:normal}
thead th{background:#f3f4f6;font-weight:600}
tr.total td{font-weight:650;border-top:2px solid #d1d5db}
tr.kind th{background:#fff;text-align:left;font-size:1rem;padding-top:.9rem}
.muted{color:#6b7280}
.notes{color:#4b5563;font-size:.85rem}
@media print{
body{background:#fff;font-size:10pt}main{max-width:none;padding:0}
h1{font-size:16pt}h2{font-size:12pt;margin:12pt 0 6pt}
.headline{gap:6pt}.figure{padding:6pt}.figure .label .muted{display:none}
.figure .value{font-size:16pt}.figure .change{font-size:8pt}
.figure,.chart,.table-box{border-color:#9ca3af;break-inside:avoid}
.table-box{overflow:visible}
table{font-size:8pt}th,td{padding:3pt 4pt;white-space:normal}
thead{display:table-header-group}tr{break-inside:avoid}
@page{size:A4;margin:12mm}
}
"""


def render_page(report: Report) -> str:
    title = f"Closed-loop report, {report.since:%-d %b %Y} to {report.until:%-d %b %Y}"
    previous = report.figures.period.before()
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="sub">People handed from sales to marketing, and how many came back and bought. '
        f"Compared with the {(report.until - report.since).days} days before "
        f"({previous.start:%-d %b} to {previous.end:%-d %b %Y}).</p>"
        f"{_headline(report)}"
        f"<h2>Reasons side by side</h2>{_chart(report)}"
        f"<h2>Every reason</h2>{_table(report)}"
        f"{_notes(report)}</main></body></html>\n"
    )


def _headline(report: Report) -> str:
    now, before = report.figures.overall, report.figures.previous
    figures = [
        ("Lost", now.lost or 0, before.lost or 0, "deals lost and leads disqualified"),
        ("Recycled", now.recycled or 0, before.recycled or 0, "people handed to marketing"),
        ("Came back", now.came_back, before.came_back, "back with sales"),
        ("Won", now.won, before.won, "came back and bought"),
        ("Revenue", now.revenue, before.revenue, "from those won deals"),
    ]
    cards = "".join(
        f'<div class="figure" data-figure="{escape(label.lower())}"><div class="label">{escape(label)}'
        f' <span class="muted">({escape(hint)})</span></div>'
        f'<div class="value">{money(value)}</div>'
        f'<div class="change">{escape(_against(value, was))}</div></div>'
        for label, value, was, hint in figures
    )
    return f'<section class="headline" aria-label="Headline numbers">{cards}</section>'


def _against(now: float, before: float) -> str:
    if before == 0:
        return "none the period before" if now else "none the period before either"
    if now == before:
        return "same as the period before"
    return f"{change_text(now, before)} on {money(before)} the period before"


def _chart(report: Report) -> str:
    """Grouped horizontal bars, one group per reason that hands people to marketing, on one scale."""
    lines = [line for line in report.figures.reasons if line.funnel.recycled is not None]
    if not lines:
        return '<p class="muted">Nobody was handed to marketing in this period.</p>'
    label_width, bar_space, bar_height, gap = 260, 560, 14, 14
    group_height = len(SERIES) * (bar_height + 3) + gap
    legend_height = 28
    height = legend_height + group_height * len(lines)
    scale = max(max(line.funnel.recycled or 0 for line in lines), 1)
    parts = []
    for index, (_, name, colour) in enumerate(SERIES):
        x = label_width + index * 130
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 18}" y="15" font-size="13">{name}</text>'
        )
    for row, line in enumerate(lines):
        top = legend_height + row * group_height
        label = f"{line.reason} ({'lead' if line.kind is LossKind.LEAD else 'deal'})"
        parts.append(
            f'<text x="{label_width - 10}" y="{top + group_height / 2}" font-size="13" '
            f'text-anchor="end">{escape(_shorten(label, 34))}</text>'
        )
        for index, (attribute, name, colour) in enumerate(SERIES):
            value = int(getattr(line.funnel, attribute) or 0)
            width = round(bar_space * value / scale)
            y = top + index * (bar_height + 3)
            parts.append(
                f'<rect class="bar" data-reason="{escape(line.reason)}" data-series="{attribute}" '
                f'x="{label_width}" y="{y}" width="{max(width, 1)}" height="{bar_height}" fill="{colour}">'
                f"<title>{escape(line.reason)}: {name.lower()} {value}</title></rect>"
                f'<text x="{label_width + max(width, 1) + 6}" y="{y + bar_height - 2}" font-size="12">'
                f"{value}</text>"
            )
    total_width = label_width + bar_space + 60
    return (
        f'<div class="chart"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total_width} {height}" '
        f'role="img" aria-label="Recycled, came back and won, per reason">{"".join(parts)}</svg></div>'
    )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


HEADER = (
    "",
    "Lost",
    "Recycled",
    "Came back",
    "Came back rate",
    "Won",
    "Won rate",
    "Revenue",
    "Median time to come back",
)


def _row(label: str, funnel: Funnel, css: str = "") -> str:
    css_attr = f' class="{css}"' if css else ""
    return (
        f"<tr{css_attr}>"
        + "".join(f"<td>{escape(cell)}</td>" for cell in funnel_cells(label, funnel))
        + "</tr>"
    )


def _table(report: Report) -> str:
    figures = report.figures
    head = "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in HEADER) + "</tr></thead>"
    body = []
    for kind in LossKind:
        body.append(f'<tr class="kind"><th colspan="{len(HEADER)}">{escape(KIND_NAMES[kind])}</th></tr>')
        body += [_row(line.reason, line.funnel) for line in figures.reasons if line.kind is kind]
        body.append(_row(f"All {KIND_NAMES[kind].lower()}", figures.by_kind[kind], "total"))
    body.append(_row("Everything", figures.overall, "total"))
    body.append(f'<tr class="kind"><th colspan="{len(HEADER)}">By original source</th></tr>')
    body += [_row(source_name(line.source), line.funnel) for line in figures.sources]
    return f'<div class="table-box"><table>{head}<tbody>{"".join(body)}</tbody></table></div>'


def _notes(report: Report) -> str:
    hours = report.waiting_hours
    waiting = (
        f"{len(hours)} lost deal(s) still wait for a reason; the oldest for {hours[-1]:.0f} hours."
        if hours
        else "No lost deal is waiting for a reason."
    )
    return (
        '<h2>How to read it</h2><p class="notes">'
        "A person counts once per time they were handed to marketing, however many of their deals "
        "were lost. <b>Recycled</b>: handed to marketing in this period. <b>Came back</b>: sales "
        "worked them again since. <b>Won</b>: came back and then a deal of theirs closed won; "
        "<b>revenue</b> adds those deals once each. Reasons marked <i>not nurtured</i> hand nobody "
        f"to marketing. {escape(waiting)}</p>"
    )


RENDERERS = {"table": render_table, "csv": render_csv, "json": render_json, "html": render_page}
