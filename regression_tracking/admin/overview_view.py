"""The admin's orphan overview: ``admin.overview``'s figures as server-rendered SVG bar charts.

Reached from the RegressionGroup changelist ("Orphan overview"), under that model's view
permission. The page needs no JavaScript and loads nothing from elsewhere: each chart is inline SVG
with a title, a description listing every figure, and visible labels and numbers. Each bar links to
the changelist filtered to its orphans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from regression_tracking.admin.overview import (
    AGE_BUCKETS,
    AgeBucket,
    Figure,
    OrphanOverview,
    orphan_overview,
)
from regression_tracking.durations import format_duration
from regression_tracking.models import RegressionGroup
from regression_tracking.services import GRACE_PERIOD

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

URL_NAME = "regression_tracking_regressiongroup_overview"
TEMPLATE = "admin/regression_tracking/regressiongroup/overview.html"
# The changelist's issue filter (admin.IssueStateFilter) and its "any orphan" value.
ISSUE_PARAMETER = "issue"
ANY_ORPHAN = "orphan"

# Chart geometry, in SVG user units (pixels at 100%).
LABEL_WIDTH = 220
BAR_AREA_WIDTH = 360
VALUE_WIDTH = 90
ROW_HEIGHT = 28
BAR_HEIGHT = 18
CHART_WIDTH = LABEL_WIDTH + BAR_AREA_WIDTH + VALUE_WIDTH


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    count: int
    count_text: str
    width: int
    # Top of the bar's row, and the baseline of its texts.
    y: int
    text_y: int
    value_x: int
    href: str


@dataclass(frozen=True, slots=True)
class SummaryFigure:
    slug: str
    value: str
    text: str
    href: str = ""


@dataclass(frozen=True, slots=True)
class BarChart:
    # Unique on the page: the SVG's title and description ids are built from it.
    slug: str
    title: str
    description: str
    bars: tuple[Bar, ...]
    height: int
    width: int = CHART_WIDTH
    label_x: int = LABEL_WIDTH - 8
    bar_x: int = LABEL_WIDTH
    bar_height: int = BAR_HEIGHT


def bar_chart(slug: str, title: str, figures: tuple[Figure, ...], hrefs: list[str]) -> BarChart:
    """Horizontal bars scaled to the largest figure; a non-zero figure gets at least a sliver."""
    largest = max((figure.count for figure in figures), default=0)
    bars = []
    for row, (figure, href) in enumerate(zip(figures, hrefs, strict=True)):
        width = round(BAR_AREA_WIDTH * figure.count / largest) if largest else 0
        if figure.count:
            width = max(width, 2)
        y = row * ROW_HEIGHT
        bars.append(
            Bar(
                label=figure.label,
                count=figure.count,
                count_text=f"{figure.count:,}",
                width=width,
                y=y + (ROW_HEIGHT - BAR_HEIGHT) // 2,
                text_y=y + ROW_HEIGHT // 2 + 5,
                value_x=LABEL_WIDTH + width + 6,
                href=href,
            )
        )
    description = (
        "; ".join(f"{figure.label}: {figure.count:,}" for figure in figures) or "no orphans"
    )
    return BarChart(
        slug=slug,
        title=title,
        description=description,
        bars=tuple(bars),
        height=max(len(bars), 1) * ROW_HEIGHT,
    )


def _changelist_url(**filters: str) -> str:
    url = reverse(f"admin:{RegressionGroup._meta.app_label}_regressiongroup_changelist")
    return f"{url}?{urlencode(filters)}"


def _age_bucket_url(overview: OrphanOverview, bucket: AgeBucket) -> str:
    """The changelist of the bucket's orphans, by date added as of the overview."""
    filters = {ISSUE_PARAMETER: ANY_ORPHAN}
    if bucket.max_age is not None:
        filters["date_added__gte"] = (overview.as_of - bucket.max_age).isoformat()
    if bucket.min_age:
        filters["date_added__lt"] = (overview.as_of - bucket.min_age).isoformat()
    return _changelist_url(**filters)


def overview_charts(overview: OrphanOverview) -> list[BarChart]:
    """The four charts of the page, each bar linking to the changelist of its orphans."""
    return [
        bar_chart(
            "reason",
            "Orphans by reason",
            overview.by_reason,
            [_changelist_url(**{ISSUE_PARAMETER: f.key}) for f in overview.by_reason],
        ),
        bar_chart(
            "type",
            "Orphans by type",
            overview.by_type,
            [
                _changelist_url(**{ISSUE_PARAMETER: ANY_ORPHAN, "type__exact": f.key})
                for f in overview.by_type
            ],
        ),
        bar_chart(
            "age",
            "Orphans by age (since date added)",
            overview.by_age,
            [_age_bucket_url(overview, bucket) for bucket in AGE_BUCKETS],
        ),
        bar_chart(
            "projects",
            f"Top {len(overview.top_projects)} projects by orphans",
            overview.top_projects,
            [
                _changelist_url(**{ISSUE_PARAMETER: ANY_ORPHAN, "project__id__exact": f.key})
                for f in overview.top_projects
            ],
        ),
    ]


def summary_figures(overview: OrphanOverview) -> list[SummaryFigure]:
    """The totals above the charts."""
    grace = format_duration(GRACE_PERIOD)
    return [
        SummaryFigure("regression-groups", f"{overview.regression_groups:,}", "regression groups"),
        SummaryFigure(
            "orphans",
            f"{overview.orphans:,}",
            "orphans",
            _changelist_url(**{ISSUE_PARAMETER: ANY_ORPHAN}),
        ),
        SummaryFigure(
            "active-orphans",
            f"{overview.active_orphans:,}",
            "active orphans (each blocks new regression issues for its endpoint or function)",
        ),
        SummaryFigure(
            "past-grace-period",
            f"{overview.past_grace_period:,}",
            f"orphans past the {grace} grace period (what a default cleanup acts on)",
        ),
    ]


def overview_view(
    request: HttpRequest, model_admin: ModelAdmin[RegressionGroup]
) -> TemplateResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    overview = orphan_overview()
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": "Orphan overview",
        "opts": model_admin.opts,
        "overview": overview,
        "summary": summary_figures(overview),
        "charts": overview_charts(overview),
    }
    return TemplateResponse(request, TEMPLATE, context)


def overview_urls(model_admin: ModelAdmin[RegressionGroup]) -> list[URLPattern]:
    """The overview's URL, to put before the model admin's own (its catch-all comes last)."""

    def view(request: HttpRequest) -> TemplateResponse:
        return overview_view(request, model_admin)

    return [path("overview/", model_admin.admin_site.admin_view(view), name=URL_NAME)]
