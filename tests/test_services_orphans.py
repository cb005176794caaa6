from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regression_tracking.cleanup import detection as orphans_module
from regression_tracking.fingerprints import generate_fingerprint, hash_fingerprint
from regression_tracking.models import Group, GroupHash, RegressionGroup, RegressionType
from regression_tracking.orphans import IssueHash, is_orphan
from regression_tracking.services import (
    MISSING_ISSUE_GROUP_MESSAGE,
    BreakdownKey,
    OrphanReason,
    OrphanScope,
    bulk_get_groups_from_fingerprints,
    detect_orphans,
)
from tests.factories import (
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_issue_for,
    create_linked_regression,
    issue_hash,
)
from tests.utils import Orphan, select_orphans

pytestmark = pytest.mark.django_db

MISSING = OrphanReason.MISSING_GROUPHASH
WITHOUT_GROUP = OrphanReason.GROUPHASH_WITHOUT_GROUP


def far_future() -> datetime:
    return timezone.now() + timedelta(days=1)


def orphan_ids(**scope: Any) -> list[int]:
    return [o.id for o in select_orphans(cutoff=far_future(), scope=OrphanScope(**scope))]


class TestBugReportScenarios:
    def test_orphan_detected_and_logged_when_its_issue_was_never_created(self, caplog) -> None:
        regression = RegressionGroupFactory.create()
        [orphan] = select_orphans(cutoff=far_future())
        assert (orphan.id, orphan.reason) == (regression.id, MISSING)
        caplog.set_level(logging.WARNING, logger="regression_tracking")
        bulk_get_groups_from_fingerprints([(regression.project_id, [issue_hash(regression)])])
        assert [r.getMessage() for r in caplog.records] == [MISSING_ISSUE_GROUP_MESSAGE]

    def test_normal_flow_with_both_records_is_not_an_orphan(self) -> None:
        regression = create_linked_regression()
        assert select_orphans(cutoff=far_future()) == []
        groups = bulk_get_groups_from_fingerprints(
            [(regression.project_id, [issue_hash(regression)])]
        )
        assert len(groups) == 1

    def test_deleting_the_issue_leaves_a_detectable_orphan(self) -> None:
        regression = RegressionGroupFactory.create()
        grouphash = create_issue_for(regression)
        assert grouphash.group is not None
        grouphash.group.delete()
        assert [(o.id, o.reason) for o in select_orphans(cutoff=far_future())] == [
            (regression.id, MISSING)
        ]

    def test_bulk_query_over_mixed_states(self) -> None:
        linked = create_linked_regression()
        never_created = RegressionGroupFactory.create()
        discarded = RegressionGroupFactory.create()
        create_grouphash_without_group(discarded)
        deleted = RegressionGroupFactory.create()
        doomed = create_issue_for(deleted)
        assert doomed.group is not None
        doomed.group.delete()
        orphans = select_orphans(cutoff=far_future())
        assert [(o.id, o.reason) for o in orphans] == [
            (never_created.id, MISSING),
            (discarded.id, WITHOUT_GROUP),
            (deleted.id, MISSING),
        ]
        groups = bulk_get_groups_from_fingerprints(
            [(r.project_id, [issue_hash(r)]) for r in (linked, never_created, discarded, deleted)]
        )
        assert list(groups) == [(linked.project_id, (issue_hash(linked),))]

    def test_grouphash_whose_issue_is_gone(self) -> None:
        regression = RegressionGroupFactory.create()
        grouphash = create_issue_for(regression)
        GroupHash.objects.filter(id=grouphash.id).update(group=None, group_tombstone_id=9)
        [orphan] = select_orphans(cutoff=far_future())
        assert (orphan.id, orphan.reason) == (regression.id, WITHOUT_GROUP)


class TestSelection:
    def test_same_fingerprint_in_two_projects_is_judged_per_project(self) -> None:
        linked = create_linked_regression()
        orphan = RegressionGroupFactory.create(fingerprint=linked.fingerprint)
        assert orphan_ids() == [orphan.id]

    def test_active_and_inactive_versions_share_their_issue(self) -> None:
        old = RegressionGroupFactory.create(active=False)
        new = RegressionGroupFactory.create(
            project=old.project, fingerprint=old.fingerprint, version=2
        )
        orphans = select_orphans(cutoff=far_future())
        assert [(o.id, o.active) for o in orphans] == [(old.id, False), (new.id, True)]
        create_issue_for(new)
        assert select_orphans(cutoff=far_future()) == []

    def test_function_and_endpoint_regressions(self) -> None:
        function = RegressionGroupFactory.create(
            type=RegressionType.FUNCTION,
            fingerprint=generate_fingerprint(RegressionType.FUNCTION, 123456789),
        )
        endpoint = RegressionGroupFactory.create(
            fingerprint=generate_fingerprint(RegressionType.ENDPOINT, "/api/x")
        )
        create_issue_for(function)
        assert orphan_ids() == [endpoint.id]
        assert orphan_ids(regression_type=RegressionType.FUNCTION) == []
        assert orphan_ids(regression_type=RegressionType.ENDPOINT) == [endpoint.id]

    def test_non_ascii_transaction_names(self) -> None:
        linked = create_linked_regression(
            fingerprint=generate_fingerprint(RegressionType.ENDPOINT, "/api/café/日本")
        )
        orphan = RegressionGroupFactory.create(
            fingerprint=generate_fingerprint(RegressionType.ENDPOINT, "/api/naïve/ü")
        )
        assert orphan_ids() == [orphan.id]
        # A raw non-ASCII fingerprint hashes the same in the database as in Python.
        raw = RegressionGroupFactory.create(project=linked.project, fingerprint="ünïcødé/日本")
        create_issue_for(raw)
        assert orphan_ids() == [orphan.id]

    def test_scope_by_project_and_after_id(self) -> None:
        first, second, third = RegressionGroupFactory.create_batch(3)
        assert orphan_ids(project_ids=(first.project_id, third.project_id)) == [first.id, third.id]
        assert orphan_ids(project_ids=()) == []
        assert orphan_ids(after_id=first.id) == [second.id, third.id]

    def test_old_enough_compares_date_added_with_the_cutoff(self) -> None:
        now = timezone.now()
        old = RegressionGroupFactory.create(date_added=now - timedelta(hours=25))
        recent = RegressionGroupFactory.create(date_added=now - timedelta(hours=23))
        orphans = select_orphans(cutoff=now - timedelta(hours=24))
        assert [(o.id, o.old_enough) for o in orphans] == [(old.id, True), (recent.id, False)]

    def test_orphan_row_carries_project_and_state(self) -> None:
        regression = RegressionGroupFactory.create(active=False)
        assert select_orphans(cutoff=far_future()) == [
            Orphan(
                id=regression.id,
                project_id=regression.project_id,
                reason=MISSING,
                active=False,
                old_enough=True,
            )
        ]

    def test_one_statement(self, django_assert_num_queries) -> None:
        RegressionGroupFactory.create_batch(3)
        with django_assert_num_queries(1):
            assert len(select_orphans(cutoff=far_future())) == 3

    def test_detection_counts_linked_and_orphaned(self) -> None:
        linked = create_linked_regression()
        RegressionGroupFactory.create(project=linked.project)
        RegressionGroupFactory.create()
        assert detect_orphans(cutoff=far_future()).scanned == 3
        scope = OrphanScope(project_ids=(linked.project_id,))
        assert detect_orphans(cutoff=far_future(), scope=scope).scanned == 2


@pytest.mark.postgresql
def test_postgresql_plans_the_predicate_as_an_anti_join() -> None:
    RegressionGroupFactory.create_batch(3)
    with connection.cursor() as cursor:
        # Tiny tables: without these the planner may pick a nested loop or a merge join; the point
        # is that the predicate can be planned as a hash anti-join (never a subplan per row).
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
    plan = RegressionGroup.objects.filter(is_orphan()).values("id").explain()
    assert "Hash Anti Join" in plan, plan


@pytest.mark.postgresql
def test_postgresql_plans_detection_as_one_left_join_statement(
    django_assert_num_queries,
) -> None:
    RegressionGroupFactory.create_batch(3)
    with connection.cursor() as cursor:
        # Tiny tables: without these the planner may pick a nested loop or a merge join; the point
        # is that the predicate can be planned as a hash anti-join (never a subplan per row).
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
    scanned, scanned_params, from_sql, params = orphans_module._census(
        scope=OrphanScope(), cutoff=far_future(), active_only=False, id_range=None, using="default"
    )
    census = orphans_module._POSTGRESQL_CENSUS.format(
        scanned=scanned, chunk=orphans_module.CENSUS_CHUNK_IDS, from_sql=from_sql
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + census, scanned_params + params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # One join reads GroupHash once: no second join of the orphans for their reason.
    assert "Hash Left Join" in plan, plan
    assert plan.count("on sentry_grouphash") == 1, plan
    # The join's scan and the scanned count's.
    assert plan.count("on sentry_regressiongroup") == 2, plan
    # Savepoint, two set_config, the bounds of the id range, the census, release.
    with django_assert_num_queries(6):
        detection = detect_orphans(cutoff=far_future())
    assert (detection.scanned, len(detection.eligible_ids)) == (3, 3)


@pytest.mark.postgresql
def test_postgresql_plans_the_census_with_a_breakdown_as_the_same_one_join(
    django_assert_num_queries,
) -> None:
    RegressionGroupFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute("SET LOCAL enable_mergejoin = off")
    now = timezone.now()
    scanned, scanned_params, from_sql, params = orphans_module._census(
        scope=OrphanScope(),
        cutoff=now - GRACE,
        active_only=False,
        id_range=None,
        using="default",
        breakdown=(now - timedelta(days=7),),
    )
    census = orphans_module._BREAKDOWN_CENSUS.format(
        scanned=scanned, from_sql=from_sql, group_by=orphans_module._POSTGRESQL_BREAKDOWN_GROUPS
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + census, scanned_params + params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Hash Left Join" in plan, plan
    assert plan.count("on sentry_grouphash") == 1, plan
    assert plan.count("on sentry_regressiongroup") == 2, plan
    # Savepoint, two set_config, the bounds of the id range, the census, release.
    with django_assert_num_queries(6):
        detection = detect_orphans(cutoff=far_future(), breakdown=(now,))
    assert detection.breakdown is not None
    assert detection.scanned == sum(detection.breakdown.counts.values()) == 3
    assert sum(detection.breakdown.by_project.values()) == 3


@pytest.mark.postgresql
def test_postgresql_census_is_logged_with_its_values_bound(django_assert_num_queries) -> None:
    RegressionGroupFactory.create_batch(2)
    cutoff = far_future()
    with django_assert_num_queries(6) as captured:
        detection = detect_orphans(cutoff=cutoff, scope=OrphanScope(shard=(0, 1)))
    assert len(detection.eligible_ids) == 2
    [census] = [q["sql"] for q in captured.captured_queries if "string_agg" in q["sql"]]
    # Bound client-side, as Django's own cursors bind: no server-side placeholder is left.
    assert "$1" not in census
    assert str(cutoff.year) in census


class TestDetection:
    def test_counts_reasons_too_recent_and_eligible_ids_in_id_order(self) -> None:
        now = timezone.now()
        create_linked_regression()
        missing = RegressionGroupFactory.create(date_added=now - timedelta(days=3))
        discarded = RegressionGroupFactory.create(date_added=now - timedelta(days=2))
        create_grouphash_without_group(discarded)
        inactive = RegressionGroupFactory.create(active=False, date_added=now - timedelta(days=2))
        RegressionGroupFactory.create(date_added=now)
        detection = detect_orphans(cutoff=now - timedelta(hours=24))
        assert detection.scanned == 5
        assert detection.by_reason == {MISSING: 3, WITHOUT_GROUP: 1}
        assert (detection.orphaned, detection.too_recent) == (4, 1)
        assert list(detection.eligible_ids) == [missing.id, discarded.id, inactive.id]
        active_only = detect_orphans(cutoff=now - timedelta(hours=24), active_only=True)
        assert list(active_only.eligible_ids) == [missing.id, discarded.id]

    def test_several_id_ranges_add_up(self, monkeypatch) -> None:
        rows = RegressionGroupFactory.create_batch(5)
        create_issue_for(rows[2])
        whole = detect_orphans(cutoff=far_future())
        monkeypatch.setattr(orphans_module, "DETECTION_RANGE_IDS", 2)
        ranged = detect_orphans(cutoff=far_future())
        assert ranged == whole
        assert list(ranged.eligible_ids) == [r.id for r in rows if r is not rows[2]]

    @pytest.mark.parametrize("range_rows", [2, 4_000_000])
    def test_work_grows_with_the_rows_not_the_id_span(
        self, monkeypatch, range_rows, django_assert_max_num_queries
    ) -> None:
        # Ids up to the largest bigint: one statement per DETECTION_RANGE_IDS ids between the
        # smallest and the largest would be billions of statements.
        ids = [1, 3, 20_000_000_000, 4_000_000_000_000, 2**63 - 2, 2**63 - 1]
        project = RegressionGroupFactory.create().project
        RegressionGroup.objects.all().delete()
        for row_id in ids:
            RegressionGroupFactory.create(id=row_id, project=project)
        create_issue_for(RegressionGroup.objects.get(id=3))
        monkeypatch.setattr(orphans_module, "DETECTION_RANGE_IDS", range_rows)
        with django_assert_max_num_queries(12):
            detection = detect_orphans(cutoff=far_future())
        assert (detection.scanned, detection.orphaned) == (6, 5)
        assert list(detection.eligible_ids) == [row_id for row_id in ids if row_id != 3]
        with django_assert_max_num_queries(12):
            selected = detect_orphans(
                cutoff=far_future(), scope=orphans_module.OrphanScope(ids=(1, 2**63 - 1))
            )
        assert list(selected.eligible_ids) == [1, 2**63 - 1]

    @pytest.mark.postgresql
    def test_ids_in_several_chunks_come_back_whole_and_in_id_order(self, monkeypatch) -> None:
        now = timezone.now()
        rows = RegressionGroupFactory.create_batch(9, date_added=now - timedelta(days=2))
        for linked in rows[1::3]:
            create_issue_for(linked)
        young = RegressionGroupFactory.create(date_added=now)
        whole = detect_orphans(cutoff=now - GRACE)
        monkeypatch.setattr(orphans_module, "CENSUS_CHUNK_IDS", 2)
        chunked = detect_orphans(cutoff=now - GRACE)
        assert chunked == whole
        assert (chunked.scanned, chunked.orphaned, chunked.too_recent) == (10, 7, 1)
        assert list(chunked.eligible_ids) == [
            r.id for r in rows if r not in rows[1::3] and r is not young
        ]

    def test_without_orphans_the_scanned_count_still_arrives(self) -> None:
        for row in RegressionGroupFactory.create_batch(3):
            create_issue_for(row)
        detection = detect_orphans(cutoff=far_future())
        assert (detection.scanned, detection.orphaned, len(detection.eligible_ids)) == (3, 0, 0)

    def test_empty_scope_and_empty_table(self) -> None:
        assert detect_orphans(cutoff=far_future()) == orphans_module.Detection()
        RegressionGroupFactory.create()
        empty = detect_orphans(cutoff=far_future(), scope=OrphanScope(project_ids=()))
        assert empty.scanned == 0

    def test_a_breakdown_counts_the_orphans_by_reason_type_age_active_and_project(self) -> None:
        now = timezone.now()
        cutoff, week = now - GRACE, now - timedelta(days=7)
        create_linked_regression(date_added=now - timedelta(days=30))
        young = RegressionGroupFactory.create(date_added=now - timedelta(hours=1))
        RegressionGroupFactory.create(
            project=young.project, date_added=now - timedelta(days=2), active=False
        )
        discarded = RegressionGroupFactory.create(
            date_added=now - timedelta(days=30), type=RegressionType.FUNCTION
        )
        create_grouphash_without_group(discarded)
        detection = detect_orphans(cutoff=cutoff, breakdown=(week,))
        endpoint, function = RegressionType.ENDPOINT, RegressionType.FUNCTION
        assert detection.breakdown is not None
        assert detection.breakdown.counts == {
            BreakdownKey(MISSING, endpoint, 0, True): 1,
            BreakdownKey(MISSING, endpoint, 1, False): 1,
            BreakdownKey(WITHOUT_GROUP, function, 2, True): 1,
        }
        assert detection.breakdown.by_project == {young.project_id: 2, discarded.project_id: 1}
        # The census's own figures come with it, as without a breakdown.
        plain = detect_orphans(cutoff=cutoff)
        assert (detection.scanned, detection.by_reason, detection.too_recent) == (
            plain.scanned,
            plain.by_reason,
            plain.too_recent,
        )
        # The ids are not collected: the breakdown is a census for counting.
        assert list(detection.eligible_ids) == []
        assert plain.breakdown is None

    def test_a_breakdown_over_several_id_ranges_adds_up(self, monkeypatch) -> None:
        now = timezone.now()
        rows = [
            RegressionGroupFactory.create(date_added=now - timedelta(days=days))
            for days in (0, 3, 10, 3, 0)
        ]
        create_issue_for(rows[2])
        edges = (now - timedelta(days=7),)
        whole = detect_orphans(cutoff=now - GRACE, breakdown=edges)
        monkeypatch.setattr(orphans_module, "DETECTION_RANGE_IDS", 2)
        ranged = detect_orphans(cutoff=now - GRACE, breakdown=edges)
        assert ranged == whole
        assert ranged.breakdown is not None
        assert sum(ranged.breakdown.counts.values()) == ranged.orphaned == 4

    def test_a_breakdown_without_orphans_still_counts_the_rows(self) -> None:
        for row in RegressionGroupFactory.create_batch(3):
            create_issue_for(row)
        detection = detect_orphans(cutoff=far_future(), breakdown=())
        assert detection.scanned == 3
        assert detection.breakdown is not None
        assert (detection.breakdown.counts, detection.breakdown.by_project) == ({}, {})

    @pytest.mark.parametrize(
        "before_cutoff",
        [(timedelta(0),), (timedelta(hours=-1),), (timedelta(days=2), timedelta(days=1))],
    )
    def test_breakdown_edges_come_before_the_cutoff_oldest_last(
        self, before_cutoff, django_assert_num_queries
    ) -> None:
        cutoff = timezone.now() - GRACE
        edges = tuple(cutoff - before for before in before_cutoff)
        with django_assert_num_queries(0), pytest.raises(ValueError, match="age edges"):
            detect_orphans(cutoff=cutoff, breakdown=edges)


GRACE = timedelta(hours=24)

regression_rows = st.lists(
    st.tuples(
        st.integers(0, 2),  # project index
        st.sampled_from(["a", "b", "c", "ü/日本"]),  # fingerprint
        st.sampled_from(list(RegressionType)),
        st.booleans(),  # active
        st.integers(0, 48),  # age in hours
    ),
    max_size=12,
    unique_by=lambda row: (row[0], row[1], row[2]),
)
issue_states = st.dictionaries(
    st.tuples(st.integers(0, 2), st.sampled_from(["a", "b", "c", "ü/日本", "zzz"])),
    st.sampled_from(["live", "without_group"]),
    max_size=10,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=regression_rows, issues=issue_states, scope_project=st.none() | st.integers(0, 2))
def test_the_rule_and_the_census_agree_with_a_brute_force_oracle(
    rows, issues, scope_project
) -> None:
    # The census restates the rule's reason and predicate over one join (cleanup/detection.py):
    # on every reason, age and scope it must find what the rule's own expressions select.
    with transaction.atomic():
        projects = ProjectFactory.create_batch(3)
        now = timezone.now()
        created = [
            RegressionGroup.objects.create(
                project=projects[p],
                fingerprint=fingerprint,
                type=regression_type,
                active=active,
                version=1,
                date_added=now - timedelta(hours=age),
                date_regressed=now,
                baseline=1,
                regressed=2,
            )
            for p, fingerprint, regression_type, active, age in rows
        ]
        for (p, fingerprint), state in issues.items():
            group = Group.objects.create(project=projects[p], message="m")
            GroupHash.objects.create(
                project=projects[p],
                hash=hash_fingerprint([fingerprint])[0],
                group=group if state == "live" else None,
            )
        scope = OrphanScope(
            project_ids=None if scope_project is None else (projects[scope_project].id,)
        )
        expected = []
        for regression, (p, fingerprint, _type, active, age) in zip(created, rows, strict=True):
            if scope_project is not None and p != scope_project:
                continue
            state = issues.get((p, fingerprint))
            if state == "live":
                continue
            reason = MISSING if state is None else WITHOUT_GROUP
            expected.append(Orphan(regression.id, projects[p].id, reason, active, age > 24))
        # Ages of exactly 24 h sit on the cutoff; the SQL compares strictly, like the oracle.
        expected.sort(key=lambda o: o.id)
        assert select_orphans(cutoff=now - GRACE, scope=scope) == expected
        for active_only in (False, True):
            census = detect_orphans(cutoff=now - GRACE, scope=scope, active_only=active_only)
            assert census.scanned == sum(
                scope_project is None or p == scope_project for p, *_ in rows
            )
            assert census.by_reason == {
                reason: sum(o.reason is reason for o in expected) for reason in OrphanReason
            }
            assert census.too_recent == sum(not o.old_enough for o in expected)
            assert list(census.eligible_ids) == [
                o.id for o in expected if o.old_enough and (o.active or not active_only)
            ]
        # The census with a breakdown: the same figures, and the orphans counted by reason, type,
        # age bucket (how many of the cutoff and the edge the orphan is older than) and active.
        edge_hours = 36
        census = detect_orphans(
            cutoff=now - GRACE, scope=scope, breakdown=(now - timedelta(hours=edge_hours),)
        )
        plain = detect_orphans(cutoff=now - GRACE, scope=scope)
        assert (census.scanned, census.by_reason, census.too_recent) == (
            plain.scanned,
            plain.by_reason,
            plain.too_recent,
        )
        attributes = {regression.id: row for regression, row in zip(created, rows, strict=True)}
        keys: Counter[BreakdownKey] = Counter()
        for orphan in expected:
            _p, _fingerprint, regression_type, _active, age = attributes[orphan.id]
            bucket = (age > GRACE.total_seconds() / 3600) + (age > edge_hours)
            keys[BreakdownKey(orphan.reason, regression_type, bucket, orphan.active)] += 1
        assert census.breakdown is not None
        assert census.breakdown.counts == dict(keys)
        assert census.breakdown.by_project == dict(Counter(o.project_id for o in expected))
        transaction.set_rollback(True)


@pytest.mark.postgresql
def test_issue_hash_skips_the_conversion_only_on_a_utf8_database() -> None:
    regression = RegressionGroupFactory.create(fingerprint="ünïcødé/日本")
    queryset = RegressionGroup.objects.annotate(key=IssueHash(F("fingerprint"))).values_list(
        "key", flat=True
    )
    # The factory's INSERT opened the connection: the server said it is UTF8.
    assert connection.connection.info.parameter_status("server_encoding") == "UTF8"
    sql = str(queryset.query)
    assert "MD5(" in sql
    assert "CONVERT_TO" not in sql
    assert list(queryset) == [hash_fingerprint([regression.fingerprint])[0]]
