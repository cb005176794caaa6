"""The admin: browse the five models, follow issue links, and clean up orphans through the service.

RegressionGroups are read-only here: the detector writes them, and the only changes the admin makes
are the two orphan actions, which go through ``cleanup_orphaned_regressions`` (race rule, grace
period, advisory lock). The query logic lives in ``admin.queries``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from regression_tracking.admin.overview_view import overview_urls
from regression_tracking.admin.queries import (
    IssueState,
    SelectionCleanup,
    SelectionOutcome,
    cleanup_selected_orphans,
    filter_by_issue_state,
    with_issue_links,
)
from regression_tracking.durations import format_duration
from regression_tracking.models import Group, GroupHash, Organization, Project, RegressionGroup
from regression_tracking.services import GRACE_PERIOD, CleanupAction, CleanupAlreadyRunning

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    from regression_tracking.admin.queries import RegressionGroupWithIssue
else:

    class ModelAdmin(admin.ModelAdmin):
        """``ModelAdmin[Model]`` at run time too, as django-stubs types it."""

        def __class_getitem__(cls, model: type[Any]) -> type[ModelAdmin]:
            return cls


# One action handles at most this many selected rows (ids go into the statements' IN lists); the
# command cleans up more.
MAX_ACTION_SELECTION = 10_000
LIST_PER_PAGE = 100

PAST_TENSE = {CleanupAction.DELETE: "Deleted", CleanupAction.DEACTIVATE: "Deactivated"}


def admin_link(model: type[Any], pk: int | None, text: object) -> SafeString | str:
    if pk is None:
        return "-"
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, text)


def regression_groups_with_hash_link(issue_hash: str) -> SafeString:
    """A link to the RegressionGroups whose issue hash is ``issue_hash`` (a changelist search)."""
    url = reverse("admin:regression_tracking_regressiongroup_changelist")
    return format_html(
        '<a href="{}?{}">regression groups with hash {}</a>',
        url,
        urlencode({"q": issue_hash}),
        issue_hash,
    )


@admin.register(Organization)
class OrganizationAdmin(ModelAdmin[Organization]):
    list_display = ("id", "slug", "name", "status", "date_added")
    search_fields = ("slug", "name")
    ordering = ("slug",)


@admin.register(Project)
class ProjectAdmin(ModelAdmin[Project]):
    list_display = ("id", "slug", "name", "organization", "status", "date_added")
    list_select_related = ("organization",)
    search_fields = ("slug", "name")
    raw_id_fields = ("organization",)
    ordering = ("organization", "slug")


@admin.register(Group)
class GroupAdmin(ModelAdmin[Group]):
    list_display = (
        "id",
        "project",
        "short_id",
        "message",
        "culprit",
        "status",
        "substatus",
        "times_seen",
        "last_seen",
        "grouphashes",
    )
    list_select_related = ("project",)
    list_filter = ("status", "substatus")
    search_fields = ("message", "culprit")
    raw_id_fields = ("project",)
    readonly_fields = ("grouphashes", "regression_groups")
    ordering = ("-id",)
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Group]:
        # One query for the hashes of the whole page, not one per row.
        return super().get_queryset(request).prefetch_related("grouphash_set")

    @admin.display(description="grouphashes")
    def grouphashes(self, obj: Group) -> SafeString:
        return format_html_join(
            ", ", "{}", ((admin_link(GroupHash, gh.pk, gh.hash),) for gh in obj.grouphash_set.all())
        )

    @admin.display(description="regression groups")
    def regression_groups(self, obj: Group) -> SafeString:
        return format_html_join(
            ", ",
            "{}",
            ((regression_groups_with_hash_link(gh.hash),) for gh in obj.grouphash_set.all()),
        )


@admin.register(GroupHash)
class GroupHashAdmin(ModelAdmin[GroupHash]):
    list_display = ("id", "hash", "project", "group_link", "group_tombstone_id", "state")
    list_select_related = ("project",)
    list_filter = (("group", admin.EmptyFieldListFilter), "state")
    search_fields = ("=hash",)
    search_help_text = "Exact hash (md5 hex of a fingerprint)."
    raw_id_fields = ("project", "group")
    readonly_fields = ("group_link", "regression_groups")
    ordering = ("-id",)
    show_full_result_count = False

    @admin.display(description="group", ordering="group_id")
    def group_link(self, obj: GroupHash) -> SafeString | str:
        # "group <id>" is Group.__str__: the link needs no query for the Group.
        return admin_link(Group, obj.group_id, f"group {obj.group_id}")

    @admin.display(description="regression groups")
    def regression_groups(self, obj: GroupHash) -> SafeString:
        return regression_groups_with_hash_link(obj.hash)


class IssueStateFilter(admin.SimpleListFilter):
    """Linked or orphaned (by reason), as EXISTS conditions of the one list query."""

    title = "issue"
    parameter_name = "issue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state.value, str(state.label)) for state in IssueState]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[RegressionGroup]
    ) -> QuerySet[RegressionGroup]:
        value = self.value()
        if value is None:
            return queryset
        if value not in IssueState.values:
            raise IncorrectLookupParameters(f"unknown issue state {value!r}")
        return filter_by_issue_state(queryset, IssueState(value))


@admin.register(RegressionGroup)
class RegressionGroupAdmin(ModelAdmin[RegressionGroup]):
    list_display = (
        "id",
        "type",
        "project",
        "fingerprint",
        "version",
        "active",
        "date_regressed",
        "issue_hash",
        "issue",
    )
    list_select_related = ("project",)
    list_filter = (IssueStateFilter, "type", "active")
    list_per_page = LIST_PER_PAGE
    search_fields = ("fingerprint__startswith", "=issue_hash")
    search_help_text = (
        "Fingerprint (or its start, e.g. the 16-character short form) or issue hash"
        " (md5 of the fingerprint)."
    )
    actions = ("deactivate_selected_orphans", "delete_selected_orphans")
    ordering = ("-id",)
    # A second COUNT(*) over the whole table on every filtered page is not worth it.
    show_full_result_count = False
    # Orphans younger than this are left alone (the orphan rule's grace period).
    orphan_min_age: timedelta = GRACE_PERIOD

    def get_queryset(self, request: HttpRequest) -> QuerySet[RegressionGroup]:
        return with_issue_links(super().get_queryset(request))

    def get_readonly_fields(
        self, request: HttpRequest, obj: RegressionGroup | None = None
    ) -> list[str]:
        fields = [field.name for field in self.opts.concrete_fields]
        return [*fields, "issue_hash", "issue"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No per-row delete page: deleting goes through the orphan action and its checks.
        return obj is None and super().has_delete_permission(request)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Django's own bulk delete would delete linked rows and skip the race rule.
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="issue hash")
    def issue_hash(self, obj: RegressionGroupWithIssue) -> str:
        return obj.issue_hash

    @admin.display(description="issue")
    def issue(self, obj: RegressionGroupWithIssue) -> SafeString | str:
        if obj.issue_group_id is not None:
            return admin_link(Group, obj.issue_group_id, f"group {obj.issue_group_id}")
        if obj.issue_grouphash_id is not None:
            return format_html(
                "orphan: {}",
                admin_link(GroupHash, obj.issue_grouphash_id, "grouphash without group"),
            )
        return "orphan: missing grouphash"

    @admin.action(description="Deactivate selected orphans", permissions=["change"])
    def deactivate_selected_orphans(
        self, request: HttpRequest, queryset: QuerySet[RegressionGroup]
    ) -> None:
        self._clean_up_selection(request, queryset, CleanupAction.DEACTIVATE)

    @admin.action(description="Delete selected orphans", permissions=["delete"])
    def delete_selected_orphans(
        self, request: HttpRequest, queryset: QuerySet[RegressionGroup]
    ) -> None:
        self._clean_up_selection(request, queryset, CleanupAction.DELETE)

    def _clean_up_selection(
        self, request: HttpRequest, queryset: QuerySet[RegressionGroup], action: CleanupAction
    ) -> None:
        ids = _selected_ids(request) or tuple(
            queryset.values_list("id", flat=True)[: MAX_ACTION_SELECTION + 1]
        )
        if len(ids) > MAX_ACTION_SELECTION:
            self.message_user(
                request,
                f"Select at most {MAX_ACTION_SELECTION:,} regression groups at a time; nothing"
                " was changed. For more, run manage.py cleanup_orphaned_regressions.",
                messages.ERROR,
            )
            return
        try:
            outcome = cleanup_selected_orphans(action=action, ids=ids, min_age=self.orphan_min_age)
        except CleanupAlreadyRunning:
            self.message_user(
                request,
                "Another orphan cleanup is running; nothing was changed. Try again when it ends.",
                messages.ERROR,
            )
            return
        level = messages.SUCCESS if outcome.acted else messages.WARNING
        self.message_user(request, describe_outcome(outcome), level)

    def get_urls(self) -> list[URLPattern]:
        # The orphan overview page (overview_view.py), linked from the changelist's template.
        return [*overview_urls(self), *super().get_urls()]


def _selected_ids(request: HttpRequest) -> tuple[int, ...] | None:
    """The ids ticked on the page, including rows deleted since (reported as gone); None when
    the action applies to the whole filtered list ("select all") or the ids are not ids."""
    if request.POST.get("select_across") not in (None, "", "0"):
        return None
    posted = request.POST.getlist(ACTION_CHECKBOX_NAME)
    if not posted or not all(value.isascii() and value.isdigit() for value in posted):
        return None
    return tuple(int(value) for value in posted[: MAX_ACTION_SELECTION + 1])


def describe_outcome(outcome: SelectionCleanup) -> str:
    """``Deactivated 2 of 5 selected regression groups; left alone 3: 1 not orphaned …``."""
    plural = "" if outcome.selected == 1 else "s"
    text = (
        f"{PAST_TENSE[outcome.action]} {outcome.acted} of {outcome.selected} selected"
        f" regression group{plural}"
    )
    reasons = {
        SelectionOutcome.LINKED: "not orphaned (a live issue)",
        SelectionOutcome.TOO_RECENT: (
            f"too recent (added less than {format_duration(outcome.min_age)} ago)"
        ),
        SelectionOutcome.ALREADY_INACTIVE: "already inactive",
        SelectionOutcome.LOCKED: "locked by another transaction (try again)",
        SelectionOutcome.CHANGED_MEANWHILE: (
            "changed meanwhile (an issue appeared, or another cleanup got there first)"
        ),
        SelectionOutcome.GONE: "no longer there",
    }
    left_alone = [
        f"{outcome.counts[key]} {reason}" for key, reason in reasons.items() if outcome.counts[key]
    ]
    if left_alone:
        text += f"; left alone {outcome.left_alone}: {', '.join(left_alone)}"
    return text + "."
