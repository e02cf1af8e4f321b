"""The HTML quality reports, rendered and looked at in a real headless Chromium.

Each page is written to a file and opened with every network request refused; the tests
assert what a person sees on screen, that hostile values from the report come out as text,
and save a full-page screenshot next to the page for a human to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from accord.quality.html import format_percentage, render_consortium_table, render_report
from browser import launch, offline_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser

HOSTILE = "<script>alert('pwned')</script>Procedure.ndjson"

FAILING: list[dict[str, Any]] = [
    {
        "check_id": "conformance.concept.procedure_occurrence.procedure_concept_id",
        "family": "conformance",
        "severity": "fatal",
        "status": "fail",
        "violating": 2847,
        "total": 91234,
        "percentage": 3.1205,
        "threshold": 0.0,
        "threshold_reason": None,
        "sentence": (
            "2,847 of 91,234 rows in procedure_occurrence have a procedure_concept_id "
            "that is not in concept (0 is allowed)"
        ),
        "error": None,
        "examples": [
            {"id": 1234, "source": f"{HOSTILE} line 17"},
            {"id": 1240, "source": None},
            {"id": 1302, "source": "Procedure.ndjson line 88"},
        ],
        "previous": {"percentage": 0.4, "status": "fail"},
    },
    {
        "check_id": "conformance.required.person.gender_concept_id",
        "family": "conformance",
        "severity": "fatal",
        "status": "fail",
        "violating": 12,
        "total": 48210,
        "percentage": 0.02489110143124,
        "threshold": 0.0,
        "threshold_reason": None,
        "sentence": "12 of 48,210 rows in person have no gender_concept_id",
        "error": None,
        "examples": [{"id": "P-00017", "source": "Patient.ndjson line 17"}],
        "previous": None,
    },
    {
        "check_id": "plausibility.range.measurement.value_as_number",
        "family": "plausibility",
        "severity": "convention",
        "status": "fail",
        "violating": 6120,
        "total": 51000,
        "percentage": 12.0,
        "threshold": 10.0,
        "threshold_reason": "lab analysers report in mixed units until the 2026-Q2 upgrade",
        "sentence": "6,120 of 51,000 rows in measurement have a value_as_number outside 0–10000",
        "error": None,
        "examples": [{"id": 55012, "source": "Observation.ndjson line 4410"}],
        "previous": {"percentage": 14.5, "status": "fail"},
    },
    {
        "check_id": "completeness.source_mapped.condition_occurrence.condition_source_value",
        "family": "completeness",
        "severity": "characterisation",
        "status": "fail",
        "violating": 410,
        "total": 80200,
        "percentage": 0.5112219451371571,
        "threshold": 0.0,
        "threshold_reason": None,
        "sentence": (
            "410 of 80,200 rows in condition_occurrence have a condition_source_value "
            "but no condition_source_concept_id"
        ),
        "error": None,
        "examples": [],
        "previous": {"percentage": 0.0, "status": "pass"},
    },
    {
        "check_id": "plausibility.after_birth.drug_exposure.drug_exposure_start_date",
        "family": "plausibility",
        "severity": "convention",
        "status": "error",
        "violating": None,
        "total": None,
        "percentage": None,
        "threshold": 0.0,
        "threshold_reason": None,
        "sentence": "could not run: Binder Error: column year_of_birth not found",
        "error": "Binder Error: column year_of_birth not found",
        "examples": [],
        "previous": {"percentage": 0.1, "status": "pass"},
    },
]


def _quiet_results() -> list[dict[str, Any]]:
    results = []
    for index, table in enumerate(("person", "visit_occurrence", "drug_exposure", "death")):
        for family, kind in (("conformance", "required"), ("plausibility", "range")):
            applicable = table != "death"
            results.append(
                {
                    "check_id": f"{family}.{kind}.{table}.field_{index}",
                    "family": family,
                    "severity": "fatal" if kind == "required" else "convention",
                    "status": "pass" if applicable else "not_applicable",
                    "violating": 0,
                    "total": 1000 if applicable else 0,
                    "percentage": 0.0 if applicable else None,
                    "threshold": 0.0,
                    "threshold_reason": None,
                    "sentence": (
                        f"0 of 1,000 rows in {table} break {kind}"
                        if applicable
                        else f"not applicable: {table} is empty"
                    ),
                    "error": None,
                    "examples": [],
                    "previous": None,
                }
            )
    return results


def sample_document() -> dict[str, Any]:
    results = FAILING + _quiet_results()
    counts = {"error": 0, "not_applicable": 0, "fail": 0, "pass": 0}
    for result in results:
        counts[result["status"]] += 1
    return {
        "format": "accord-quality-report/1",
        "member": "northgate-hospital",
        "database": "/srv/accord/northgate.duckdb",
        "submission": {
            "id": "3f2a9c41d0b84e6f9a7c2b1e5d8f0a63",
            "kind": "fhir",
            "source": HOSTILE,
            "at": "2026-03-15T10:04:00Z",
            "load_ids": ["load-0007", "load-0008"],
        },
        "decision": "quarantined",
        "counts": counts,
        "checks_run": len(results),
        "duration_seconds": 0.71,
        "example_limit": 5,
        "results": results,
        "trend": [
            {
                "submission_id": "9b1c0e2f7a6d4c3b8e5f1a2d3c4b5a69",
                "at": "2025-12-01T08:30:00Z",
                "decision": "accepted",
                "counts": {"error": 0, "not_applicable": 120, "fail": 0, "pass": 182},
            },
            {
                "submission_id": "5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b",
                "at": "2026-01-20T14:45:00+01:00",
                "decision": "accepted_with_warnings",
                "counts": {"error": 0, "not_applicable": 120, "fail": 2, "pass": 180},
            },
            {
                "submission_id": "3f2a9c41d0b84e6f9a7c2b1e5d8f0a63",
                "at": "2026-03-15T10:04:00Z",
                "decision": "quarantined",
                "counts": counts,
            },
        ],
    }


def sample_consortium() -> list[dict[str, Any]]:
    def checks(*overrides: tuple[str, str, float | None]) -> list[dict[str, Any]]:
        base = {
            "conformance.concept.procedure_occurrence.procedure_concept_id": "fatal",
            "conformance.required.person.gender_concept_id": "fatal",
            "plausibility.range.measurement.value_as_number": "convention",
            "completeness.observation_period.person": "convention",
            "plausibility.start_before_end.visit_occurrence.visit_start_date": "convention",
        }
        changed = {check_id: (status, pct) for check_id, status, pct in overrides}
        return [
            {
                "check_id": check_id,
                "severity": severity,
                "status": changed.get(check_id, ("pass", 0.0))[0],
                "percentage": changed.get(check_id, ("pass", 0.0))[1],
            }
            for check_id, severity in base.items()
        ]

    return [
        {
            "member": "northgate-hospital",
            "submission_at": "2026-03-15T10:04:00Z",
            "decision": "quarantined",
            "counts": {"error": 0, "not_applicable": 120, "fail": 3, "pass": 179},
            "checks": checks(
                ("conformance.concept.procedure_occurrence.procedure_concept_id", "fail", 3.1205),
                ("plausibility.range.measurement.value_as_number", "fail", 12.0),
            ),
        },
        {
            "member": "riverside-clinic",
            "submission_at": "2026-03-02T16:20:00Z",
            "decision": "accepted_with_warnings",
            "counts": {"error": 1, "not_applicable": 98, "fail": 1, "pass": 202},
            "checks": checks(
                ("plausibility.range.measurement.value_as_number", "fail", 10.4),
                ("completeness.observation_period.person", "error", None),
            ),
        },
        {
            "member": "<img src=x onerror=alert(1)>-university",
            "submission_at": "2026-02-27T09:00:00Z",
            "decision": "accepted",
            "counts": {"error": 0, "not_applicable": 110, "fail": 0, "pass": 192},
            "checks": checks(
                ("completeness.observation_period.person", "not_applicable", None),
            ),
        },
    ]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as chromium:
        yield chromium


def _write(tmp_path: Path, name: str, html: str) -> Path:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path


def test_report_reads_well_in_a_browser(browser: Browser, tmp_path: Path) -> None:
    document = sample_document()
    path = _write(tmp_path, "quality-report.html", render_report(document))
    with offline_page(browser, path) as opened:
        page = opened.page
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        assert page.get_by_role("heading", level=1).inner_text() == (
            "Submission of 15 March 2026 — quarantined: 2 fatal checks failed"
        )
        assert page.title() == "Data quality: northgate-hospital — 15 March 2026"
        banner = page.get_by_role("region", name="Decision")
        assert banner.is_visible()
        assert "quarantined" in banner.inner_text().lower()
        assert "not visible" in banner.inner_text() or "cannot see" in banner.inner_text()

        table = page.locator("table.problems")
        rows = table.locator("tbody tr")
        assert rows.count() == len(FAILING)
        # Fatal first, then by percentage, largest first; the check that could not run
        # is last among the non-fatal ones.
        order = [rows.nth(i).locator(".check-id").inner_text() for i in range(rows.count())]
        assert order == [
            "conformance.concept.procedure_occurrence.procedure_concept_id",
            "conformance.required.person.gender_concept_id",
            "plausibility.range.measurement.value_as_number",
            "completeness.source_mapped.condition_occurrence.condition_source_value",
            "plausibility.after_birth.drug_exposure.drug_exposure_start_date",
        ]
        for result in FAILING:
            assert page.get_by_text(result["sentence"], exact=True).is_visible()

        first = rows.nth(0).inner_text()
        assert "fatal" in first
        assert "failed" in first
        assert "3.12%" in first
        assert "2,847 of 91,234 rows" in first
        assert "up from 0.40%" in first
        for example in ("1234", "1240", "1302", "Procedure.ndjson line 88"):
            assert example in first
        assert "first 3 of 2,847" in first
        assert "new" in rows.nth(1).inner_text()
        assert "0.025%" in rows.nth(1).inner_text()
        override = rows.nth(2).inner_text()
        assert "10%" in override
        assert "mixed units until the 2026-Q2 upgrade" in override
        assert "down from 14.50%" in override
        assert "up from 0%, passed then" in rows.nth(3).inner_text()
        errored = rows.nth(4).inner_text()
        assert "could not run" in errored
        assert "last time: passed" in errored

        # The hostile file name is shown as text, in the facts and in an example source.
        assert page.get_by_text(f"{HOSTILE} line 17").is_visible()
        assert page.locator("dd", has_text=HOSTILE).is_visible()
        assert page.locator("script").count() == 0
        assert dialogs == []

        counts = page.locator("ul.counts").inner_text()
        assert re.search(r"4\s+failed", counts)
        assert re.search(r"1\s+could not run", counts)

        trend = page.locator("table.trend-table tbody tr")
        assert trend.count() == 3
        assert [trend.nth(i).locator("th").inner_text() for i in range(3)] == [
            "1 December 2025, 08:30 UTC",
            "20 January 2026, 13:45 UTC",
            "15 March 2026, 10:04 UTC (this submission)",
        ]
        assert "accepted with warnings" in trend.nth(1).inner_text()
        assert page.locator("svg.chart rect.bar").count() == 3
        assert page.get_by_role("img", name=re.compile("Failed checks per submission")).is_visible()

        # Passing checks are folded away until asked for.
        quiet = page.get_by_text("0 of 1,000 rows in person break required")
        assert not quiet.is_visible()
        page.get_by_text("passed,", exact=False).first.click()
        assert quiet.is_visible()
        assert page.locator("details h3").all_inner_texts()[:2] == [
            "Conformance (4)",
            "Plausibility (4)",
        ]

        page.screenshot(path=tmp_path / "quality-report.png", full_page=True)
        page.emulate_media(media="print")
        pdf = page.pdf(path=tmp_path / "quality-report.pdf", format="A4", landscape=True)
        assert pdf.startswith(b"%PDF")
        assert opened.strays == []


def test_consortium_table_reads_well_in_a_browser(browser: Browser, tmp_path: Path) -> None:
    rows = sample_consortium()
    html = render_consortium_table(rows)
    path = _write(tmp_path, "consortium-quality.html", html)
    with offline_page(browser, path) as opened:
        page = opened.page
        assert page.get_by_role("heading", level=1).inner_text() == (
            "Consortium data quality — 3 members: 1 quarantined, "
            "1 accepted with warnings, 1 accepted"
        )
        headers = page.locator("table.grid thead th").all_inner_texts()
        assert headers == [
            "CHECK",
            "SEVERITY",
            "northgate-hospital",
            "riverside-clinic",
            "<img src=x onerror=alert(1)>-university",
        ] or [h.upper() if i < 2 else h for i, h in enumerate(headers)] == [
            "CHECK",
            "SEVERITY",
            "northgate-hospital",
            "riverside-clinic",
            "<img src=x onerror=alert(1)>-university",
        ]
        assert page.locator("img").count() == 0

        body = page.locator("table.grid > tbody:not(.summary) > tr:not(.section)")
        # Only checks failing or erroring somewhere; fatal first, then by how many members.
        assert [body.nth(i).locator("th").inner_text() for i in range(body.count())] == [
            "procedure_occurrence.procedure_concept_id\nconformance · concept",
            "measurement.value_as_number\nplausibility · range",
            "person\ncompleteness · observation_period",
        ]
        first = body.nth(0).locator("td")
        assert "failed" in first.nth(1).inner_text()
        assert "3.12%" in first.nth(1).inner_text()
        assert "passed" in first.nth(2).inner_text()
        assert "10.40%" in body.nth(1).locator("td").nth(2).inner_text()
        assert "could not run" in body.nth(2).locator("td").nth(2).inner_text()
        assert "not applicable" in body.nth(2).locator("td").nth(3).inner_text()

        summary = page.locator("tbody.summary").inner_text()
        for word in ("quarantined", "accepted with warnings", "15 March 2026, 10:04 UTC"):
            assert word in summary
        page.screenshot(path=tmp_path / "consortium-quality.png", full_page=True)
        assert opened.strays == []


def test_the_request_guard_sees_a_page_reach_out(browser: Browser, tmp_path: Path) -> None:
    # Without this, "no stray requests" could pass because nothing is ever observed.
    path = _write(tmp_path, "leaky.html", '<!DOCTYPE html><img src="http://192.0.2.1/pixel.png">')
    with offline_page(browser, path) as opened:
        opened.page.wait_for_load_state("load")
        assert opened.strays == ["http://192.0.2.1/pixel.png"]


def test_consortium_table_carries_no_record_ids() -> None:
    # Even a row that wrongly carries examples shows none of them.
    rows = sample_consortium()
    rows[0]["checks"][0]["examples"] = [{"id": "REC-99123", "source": "Secret.ndjson line 5"}]
    html = render_consortium_table(rows)
    assert "REC-99123" not in html
    assert "Secret.ndjson" not in html


def test_every_value_is_escaped() -> None:
    html = render_report(sample_document())
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "<img" not in render_consortium_table(sample_consortium())


def test_an_accepted_submission_says_so() -> None:
    document = sample_document()
    document["decision"] = "accepted"
    document["results"] = _quiet_results()
    document["counts"] = {"error": 0, "not_applicable": 2, "fail": 0, "pass": 6}
    document["trend"] = []
    html = render_report(document)
    assert "Submission of 15 March 2026 — accepted: all 6 applicable checks passed" in html
    assert "every check that applies to this submission passed" in html


@pytest.mark.parametrize(
    ("value", "shown"),
    [(3.1205, "3.12%"), (0.0, "0%"), (0.004, "0.0040%"), (0.02489, "0.025%"), (None, "—")],
)
def test_percentages_keep_two_significant_decimals(value: float | None, shown: str) -> None:
    assert format_percentage(value) == shown
