"""Smoke tests of the overview's benchmark (``python -m benchmarks.overview``): a small run.

Like tests/test_benchmark_smoke.py it fills the test database itself and asserts no timing, so it
cannot fail on a slowdown; the figures come from the benchmark on its own data
(docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.overview import measure_shape, page_section, parse_args, summarize
from benchmarks.page import write_section


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_smoke_small_run_produces_every_figure(tmp_path) -> None:
    figures = measure_shape("discarded", rows=400, projects=10, repeat=1)
    assert (figures["rows"], figures["orphans"]) == (400, 40)
    for label in ("floor", "overview", "detection"):
        assert math.isfinite(figures[label]), label
        assert figures[label] > 0, label
        # Buffers come from the server's statistics: each touches some.
        assert figures[f"{label}_blocks"] > 0, label
    # BEGIN, two set_config, the id range's bounds, the census, COMMIT, the slugs.
    assert figures["overview_statements"] == 7
    assert summarize(figures).startswith("discarded")
    json.dumps(figures)
    page = tmp_path / "benchmarks.md"
    page.write_text("# Figures\n\nProse the benchmark leaves alone.\n")
    for _run in range(2):
        write_section(page, "overview", page_section([figures], "python -m benchmarks.overview"))
    text = page.read_text()
    assert text.startswith(
        "# Figures\n\nProse the benchmark leaves alone.\n\n<!-- figures:overview"
    )
    assert text.count("<!-- figures:overview -->") == 1
    assert "| discarded, 400 | 40 | " in text
    assert "Not met" in text or "Every target met" in text


def test_refuses_a_database_that_is_not_its_own() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--database-url", "postgres://postgres@127.0.0.1:5432/production"])


def test_refuses_an_unknown_shape() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--shapes", "default,large_projects"])
    assert parse_args(["--shapes", "discarded"]).shapes == ["discarded"]
