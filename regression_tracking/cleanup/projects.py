"""Selectors over projects, for the commands' checks of what an operator named."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS

from regression_tracking.models import Project, RegressionGroup


def unknown_project_ids(project_ids: Sequence[int], *, using: str = DEFAULT_DB_ALIAS) -> list[int]:
    """The ids that name neither a project nor any regression group, in the order given.

    A regression group's project counts: upstream keeps a bare ``project_id``, so a Sentry
    database can hold regression groups of a deleted project, and cleaning them is the point.
    """
    found = set(
        Project.objects.using(using).filter(id__in=project_ids).values_list("id", flat=True)
    )
    if unknown := [p for p in project_ids if p not in found]:
        found |= set(
            RegressionGroup.objects.using(using)
            .filter(project_id__in=unknown)
            .values_list("project_id", flat=True)
            .distinct()
        )
    return [p for p in project_ids if p not in found]
