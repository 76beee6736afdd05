"""The HTML report as a person sees it: rendered by a real headless Chromium at a laptop's width.

The page is opened from a file, laid out at 1366 x 900 (and with its print styles at A4's width),
and measured by a probe script added to a copy of it (the report itself has no script): the headline
numbers, a bar per reason, no horizontal overflow, no engine codes in the visible text. Printing is
also checked by printing it to PDF.

Chromium comes from the system's packages; `python3 dev.py test` installs it when it is missing
(see docs/operations.md). Without it this test fails, saying how to get it: it never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handoff_worker.domain.closed_loop import EpisodeRecord, LossKind, LossRecord, Period, WonDeal, count_loop
from handoff_worker.handoff.report import Report, WaitingDeal
from handoff_worker.handoff.report_html import render_page

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# What works in containers and on CI: no sandbox (often no user namespaces), no GPU, nothing fetched.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
WIDTH, HEIGHT = 1366, 900

PROBE = """<script>
addEventListener('load', () => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom,
    left: r.left, right: r.right, width: r.width, height: r.height}; };
  const out = {
    innerWidth: innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    headline: [...document.querySelectorAll('.figure')].map(f => ({name: f.dataset.figure,
      value: f.querySelector('.value').innerText, change: f.querySelector('.change').innerText, ...box(f)})),
    bars: [...document.querySelectorAll('rect.bar')].map(b => ({reason: b.dataset.reason,
      series: b.dataset.series, ...box(b)})),
    chart: box(document.querySelector('.chart')),
    rows: [...document.querySelectorAll('tbody tr')].map(r => r.innerText),
    text: document.body.innerText,
  };
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
REASONS = (
    "Pricing",
    "Competitor",
    "Not Ready",
    "Feature Missing",
    "No Budget This Year - Revisit After Planning",
    "Champion Left",
    "Timing",
    "Went Silent",
)


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium is not installed: the HTML report is checked in a real browser. Run the tests with "
        "`python3 dev.py test` (it installs Debian's chromium when run as root), or install it: "
        "`sudo apt-get install -y chromium` (Debian/Ubuntu), `brew install --cask chromium` (macOS)."
    )


def quarter() -> Report:
    """A quarter of a portal with eight reasons that nurture, one that never does, and leads."""
    period = Period(T0, T0 + timedelta(days=90))
    losses, episodes, won = [], [], {}
    for r, reason in enumerate(REASONS):
        for n in range(40 - 4 * r):
            day = T0 + timedelta(days=(n * 7) % 88, hours=n)
            losses.append(LossRecord(f"deal:{r}{n:03}:1", LossKind.DEAL, reason, day))
            cid = f"{r}{n:03}"
            back = day + timedelta(days=3 + n % 20) if n % (r + 2) == 0 else None
            episodes.append(EpisodeRecord(cid, 1, LossKind.DEAL, reason, day, back))
            if back is not None and n % 4 == 0:
                won[cid] = [WonDeal(f"w{cid}", back + timedelta(days=10), 12_000.0 + 500 * n)]
    losses += [
        LossRecord(f"deal:9{n:03}:1", LossKind.DEAL, "Not a Fit - Never Will Be", T0) for n in range(7)
    ]
    for n in range(15):
        day = T0 + timedelta(days=n * 5)
        losses.append(LossRecord(f"contact:8{n:03}:1", LossKind.LEAD, "Not Ready", day))
        back = day + timedelta(days=9) if n % 3 == 0 else None
        episodes.append(EpisodeRecord(f"8{n:03}", 1, LossKind.LEAD, "Not Ready", day, back))
    # The quarter before: fewer losses, for the comparison.
    for n in range(60):
        day = T0 - timedelta(days=1 + n)
        losses.append(LossRecord(f"deal:7{n:03}:1", LossKind.DEAL, "Pricing", day))
        episodes.append(
            EpisodeRecord(f"7{n:03}", 1, LossKind.DEAL, "Pricing", day, day if n % 4 == 0 else None)
        )
    sources = {
        e.contact_id: ("PAID_SEARCH", "ORGANIC_SEARCH", "REFERRALS", "")[i % 4]
        for i, e in enumerate(episodes)
    }
    figures = count_loop(
        losses,
        episodes,
        won,
        sources,
        never_nurtured=frozenset({"Not a Fit - Never Will Be"}),
        period=period,
    )
    return Report(figures, [WaitingDeal("5001", period.end - timedelta(hours=30))])


def render_in_chromium(
    page: Path, profile: Path, *extra: str, width: int = WIDTH
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{HEIGHT}",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def measure(folder: Path, html: str, *, width: int = WIDTH) -> dict[str, Any]:
    """Lay the page out in Chromium at this width and return what the probe measured."""
    page = folder / "report.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = render_in_chromium(
        page, folder / "profile", "--virtual-time-budget=5000", "--dump-dom", width=width
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the probe did not run: {result.stdout[-500:]} {result.stderr[-500:]}"
    probe: dict[str, Any] = json.loads(
        found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    )
    return probe


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the browser laid out on a laptop screen."""
    return measure(tmp_path_factory.mktemp("report"), render_page(quarter()))


def test_the_headline_numbers_are_on_the_first_screen(seen: dict[str, Any]) -> None:
    headline = seen["headline"]
    assert isinstance(headline, list)
    figures = {f["name"]: f for f in headline}
    report = quarter().figures
    assert [f["name"] for f in headline] == ["lost", "recycled", "came back", "won", "revenue"]
    assert figures["lost"]["value"] == f"{report.overall.lost:,}"
    assert figures["recycled"]["value"] == f"{report.overall.recycled:,}"
    assert figures["came back"]["value"] == f"{report.overall.came_back:,}"
    assert figures["won"]["value"] == f"{report.overall.won:,}"
    assert figures["revenue"]["value"] == f"{report.overall.revenue:,.0f}"
    assert "the period before" in figures["recycled"]["change"]
    for figure in headline:
        assert figure["width"] > 150 and figure["top"] >= 0 and figure["bottom"] <= HEIGHT, figure


def test_the_chart_has_a_bar_per_reason_and_series_side_by_side(seen: dict[str, Any]) -> None:
    bars = seen["bars"]
    assert isinstance(bars, list)
    nurtured = {*REASONS, "Not Ready"}
    assert {b["reason"] for b in bars} == nurtured  # the never-nurtured reason has no bar
    by_reason: dict[str, dict[str, dict[str, float]]] = {}
    for bar in bars:
        by_reason.setdefault(bar["reason"], {})[bar["series"]] = bar
    # Not Ready has a deal line and a lead line: two groups of three bars.
    assert len(bars) == 3 * (len(REASONS) + 1)
    pricing = by_reason["Pricing"]
    assert pricing["recycled"]["width"] > pricing["came_back"]["width"] > pricing["won"]["width"] > 0
    # One scale for every reason: Pricing recycled the most, so its bar is the longest.
    assert pricing["recycled"]["width"] == max(b["width"] for b in bars)
    chart = seen["chart"]
    assert isinstance(chart, dict)
    assert all(b["right"] <= chart["right"] and b["height"] >= 8 for b in bars)


def test_nothing_overflows_a_laptop_screen(seen: dict[str, Any]) -> None:
    assert seen["innerWidth"] == WIDTH
    assert seen["scrollWidth"] <= WIDTH


def test_the_table_speaks_to_people(seen: dict[str, Any]) -> None:
    rows = seen["rows"]
    text = seen["text"]
    assert isinstance(rows, list) and isinstance(text, str)
    assert "Lost deals" in rows and "Disqualified leads" in rows and "By original source" in rows
    never = next(r for r in rows if r.startswith("Not a Fit - Never Will Be"))
    assert "not nurtured" in never
    assert any(r.startswith("Paid search") for r in rows)
    for code in (
        "PAID_SEARCH",
        "handed_off",
        "not_recycled",
        "came_back",
        "deal:",
        "contact:",
        "None",
        "nan",
    ):
        assert code not in text, code


def test_the_print_layout_fits_an_a4_page(tmp_path: Path) -> None:
    """The print styles applied on screen, at A4's width inside its margins (186 mm, 703 px)."""
    printed = render_page(quarter()).replace("@media print{", "@media all{")
    assert printed != render_page(quarter())
    probe = measure(tmp_path, printed, width=703)
    assert probe["scrollWidth"] <= 703
    assert all(figure["right"] <= 703 for figure in probe["headline"])


def test_it_prints(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_page(quarter()), encoding="utf-8")
    pdf = tmp_path / "report.pdf"
    render_in_chromium(page, tmp_path / "profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    content = pdf.read_bytes()
    assert content.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", content))
    assert 1 <= pages <= 3, pages
