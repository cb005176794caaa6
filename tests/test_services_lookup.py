from __future__ import annotations

import logging

import pytest
from django.db.models.functions import MD5

from regression_tracking.fingerprints import hash_fingerprint
from regression_tracking.issues import grouping as lookup_module
from regression_tracking.models import Group, GroupHash, Project, RegressionType
from regression_tracking.ops.log import record_extra
from regression_tracking.services import (
    MISSING_GROUP_MESSAGE,
    MISSING_ISSUE_GROUP_MESSAGE,
    NOT_FOUND_METRIC,
    OrphanReason,
    bulk_get_groups_from_fingerprints,
    get_group_from_fingerprint,
    get_issue_groups_for_regressions,
    lookup_issue_groups,
)
from tests.factories import (
    GroupHashFactory,
    OrganizationFactory,
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_issue_for,
    issue_hash,
)

pytestmark = pytest.mark.django_db

LOOKUP_LOGGER = "regression_tracking.services.lookup"


def pairs_key(regression):
    return (regression.project_id, (issue_hash(regression),))


def md5(text: str) -> str:
    return hash_fingerprint([text])[0]


class TestUpstreamBehaviour:
    def test_single_project(self, django_assert_num_queries) -> None:
        grouphash = GroupHashFactory.create()
        with django_assert_num_queries(1):
            result = bulk_get_groups_from_fingerprints([(grouphash.project_id, [grouphash.hash])])
        assert result == {(grouphash.project_id, (grouphash.hash,)): grouphash.group}

    def test_several_projects(self) -> None:
        first, second = GroupHashFactory.create(), GroupHashFactory.create()
        result = bulk_get_groups_from_fingerprints(
            [(first.project_id, [first.hash]), (second.project_id, [second.hash])]
        )
        assert result == {
            (first.project_id, (first.hash,)): first.group,
            (second.project_id, (second.hash,)): second.group,
        }

    def test_missing_hash_is_absent_and_counted(self, metrics_backend) -> None:
        grouphash = GroupHashFactory.create()
        result = bulk_get_groups_from_fingerprints(
            [(grouphash.project_id, [grouphash.hash]), (grouphash.project_id, [md5("nothing")])]
        )
        assert result == {(grouphash.project_id, (grouphash.hash,)): grouphash.group}
        assert metrics_backend.calls == [(NOT_FOUND_METRIC, 1, None)]

    def test_same_fingerprint_in_two_projects_maps_to_two_groups(self) -> None:
        first = GroupHashFactory.create(hash=md5("shared"))
        second = GroupHashFactory.create(hash=md5("shared"))
        result = bulk_get_groups_from_fingerprints(
            [(first.project_id, [md5("shared")]), (second.project_id, [md5("shared")])]
        )
        assert result[(first.project_id, (md5("shared"),))] == first.group
        assert result[(second.project_id, (md5("shared"),))] == second.group
        assert first.group != second.group

    def test_first_hash_with_live_group_wins(self) -> None:
        project = ProjectFactory.create()
        GroupHashFactory.create(project=project, hash=md5("discarded"), group=None)
        second = GroupHashFactory.create(project=project, hash=md5("second"))
        GroupHashFactory.create(project=project, hash=md5("third"))
        fingerprint = [md5("never-created"), md5("discarded"), md5("second"), md5("third")]
        result = bulk_get_groups_from_fingerprints([(project.id, fingerprint)])
        assert result == {(project.id, tuple(fingerprint)): second.group}

    def test_list_order_decides_not_id_order(self) -> None:
        project = ProjectFactory.create()
        older = GroupHashFactory.create(project=project, hash=md5("older"))
        newer = GroupHashFactory.create(project=project, hash=md5("newer"))
        fingerprint = [md5("newer"), md5("older")]
        result = bulk_get_groups_from_fingerprints([(project.id, fingerprint)])
        assert result == {(project.id, tuple(fingerprint)): newer.group}
        assert older.group != newer.group

    def test_grouphash_with_null_group_counts_as_not_found(self, metrics_backend) -> None:
        grouphash = GroupHashFactory.create(group=None)
        assert bulk_get_groups_from_fingerprints([(grouphash.project_id, [grouphash.hash])]) == {}
        assert metrics_backend.total(NOT_FOUND_METRIC) == 1

    def test_hash_of_another_project_does_not_resolve(self) -> None:
        grouphash = GroupHashFactory.create()
        other = ProjectFactory.create()
        assert bulk_get_groups_from_fingerprints([(other.id, [grouphash.hash])]) == {}

    def test_get_group_from_fingerprint(self) -> None:
        grouphash = GroupHashFactory.create()
        assert get_group_from_fingerprint(grouphash.project_id, [grouphash.hash]) == grouphash.group
        assert get_group_from_fingerprint(grouphash.project_id, [md5("nothing")]) is None


class TestQueryBudget:
    def test_empty_input_makes_no_query(self, django_assert_num_queries, metrics_backend) -> None:
        with django_assert_num_queries(0):
            assert bulk_get_groups_from_fingerprints([]) == {}
        assert metrics_backend.calls == []

    @pytest.mark.parametrize(("pairs", "projects"), [(1, 1), (100, 10), (5_000, 250)])
    def test_one_statement_when_every_pair_resolves(
        self, pairs, projects, django_assert_num_queries, metrics_backend
    ) -> None:
        organization = OrganizationFactory.create()
        project_rows = Project.objects.bulk_create(
            Project(organization=organization, slug=f"p{i}", name=f"P{i}") for i in range(projects)
        )
        groups = Group.objects.bulk_create(
            Group(project=project_rows[i % projects], message="m", short_id=i) for i in range(pairs)
        )
        GroupHash.objects.bulk_create(
            GroupHash(project_id=group.project_id, hash=md5(f"fp-{i}"), group=group)
            for i, group in enumerate(groups)
        )
        request = [(group.project_id, [md5(f"fp-{i}")]) for i, group in enumerate(groups)]
        with django_assert_num_queries(1):
            result = bulk_get_groups_from_fingerprints(request)
        assert len(result) == pairs
        assert all(result[(p, tuple(f))].project_id == p for p, f in request)
        assert metrics_backend.calls == []

    def test_all_missing_pairs_cost_one_more_statement(
        self, django_assert_num_queries, metrics_backend
    ) -> None:
        projects = ProjectFactory.create_batch(3)
        live = GroupHashFactory.create(project=projects[0])
        request = [(live.project_id, [live.hash])] + [
            (project.id, [md5(f"missing-{i}")]) for i, project in enumerate(projects * 4)
        ]
        with django_assert_num_queries(2):
            result = bulk_get_groups_from_fingerprints(request)
        assert list(result) == [(live.project_id, (live.hash,))]
        assert metrics_backend.calls == [(NOT_FOUND_METRIC, 12, None)]

    def test_input_may_be_a_one_shot_iterator_with_duplicates(self, metrics_backend) -> None:
        grouphash = GroupHashFactory.create()
        missing = (grouphash.project_id, [md5("gone")])
        pairs = iter([(grouphash.project_id, [grouphash.hash])] * 3 + [missing, missing])
        result = bulk_get_groups_from_fingerprints(pairs)
        assert result == {(grouphash.project_id, (grouphash.hash,)): grouphash.group}
        # Duplicates of one missing pair are one missing key.
        assert metrics_backend.calls == [(NOT_FOUND_METRIC, 1, None)]

    def test_fingerprint_may_be_a_tuple(self) -> None:
        grouphash = GroupHashFactory.create()
        result = bulk_get_groups_from_fingerprints([(grouphash.project_id, (grouphash.hash,))])
        assert result == {(grouphash.project_id, (grouphash.hash,)): grouphash.group}


class TestBadInput:
    @pytest.mark.parametrize(
        ("pairs", "error", "message"),
        [
            ([(1, "0" * 32)], TypeError, "must be a list of hashes, not str"),
            ([(1, [])], ValueError, "fingerprint is empty"),
            ([("1", ["0" * 32])], TypeError, "project id must be an int"),
            ([(True, ["0" * 32])], TypeError, "project id must be an int"),
            ([(1.0, ["0" * 32])], TypeError, "project id must be an int"),
            ([(1, ["my-raw-fingerprint"])], ValueError, "not the raw fingerprint"),
            ([(1, ["A" * 32])], ValueError, "lowercase hex md5"),
            ([(1, ["0" * 31])], ValueError, "lowercase hex md5"),
            ([(1, ["0" * 32 + "\n"])], ValueError, "lowercase hex md5"),
            ([(1, [None])], ValueError, "lowercase hex md5"),
            ([(1, b"0" * 32)], TypeError, "not bytes"),
            (["ab"], TypeError, "expected a \\(project_id, fingerprint\\) pair"),
            ([(1,)], TypeError, "expected a \\(project_id, fingerprint\\) pair"),
            ([(1, ["0" * 32], 3)], TypeError, "expected a \\(project_id, fingerprint\\) pair"),
            ([None], TypeError, "expected a \\(project_id, fingerprint\\) pair"),
        ],
    )
    def test_raises_naming_the_pair_before_any_query(
        self, pairs, error, message, django_assert_num_queries
    ) -> None:
        with django_assert_num_queries(0), pytest.raises(error, match=message):
            bulk_get_groups_from_fingerprints([(1, ["f" * 32]), *pairs])

    def test_error_names_the_bad_pair(self) -> None:
        with pytest.raises(ValueError, match=r"in pair \(7, \['oops'\]\)"):
            bulk_get_groups_from_fingerprints([(7, ["oops"])])


class TestOrphanLogging:
    def test_warns_once_per_missing_pair_with_its_regressions(self, caplog) -> None:
        regression = RegressionGroupFactory.create()
        older_version = RegressionGroupFactory.create(
            project=regression.project, fingerprint=regression.fingerprint, version=2, active=False
        )
        caplog.set_level(logging.INFO, logger="regression_tracking")
        bulk_get_groups_from_fingerprints([(regression.project_id, [issue_hash(regression)])])
        [record] = caplog.records
        assert (record.name, record.levelno, record.getMessage()) == (
            LOOKUP_LOGGER,
            logging.WARNING,
            MISSING_ISSUE_GROUP_MESSAGE,
        )
        assert record_extra(record) == {
            "project_id": regression.project_id,
            "fingerprint": [issue_hash(regression)],
            "reason": "missing_grouphash",
            "regression_group_ids": sorted([regression.id, older_version.id]),
        }

    def test_reason_is_grouphash_without_group_when_the_issue_was_discarded(self, caplog) -> None:
        regression = RegressionGroupFactory.create()
        create_grouphash_without_group(regression)
        caplog.set_level(logging.INFO, logger="regression_tracking")
        bulk_get_groups_from_fingerprints([(regression.project_id, [issue_hash(regression)])])
        [record] = caplog.records
        assert record.reason == "grouphash_without_group"
        assert record.regression_group_ids == [regression.id]

    def test_missing_pair_without_regressions_logs_info(self, caplog) -> None:
        project = ProjectFactory.create()
        caplog.set_level(logging.INFO, logger="regression_tracking")
        bulk_get_groups_from_fingerprints([(project.id, [md5("not-a-regression")])])
        [record] = caplog.records
        assert (record.levelno, record.getMessage()) == (logging.INFO, MISSING_GROUP_MESSAGE)
        assert record_extra(record) == {
            "project_id": project.id,
            "fingerprint": [md5("not-a-regression")],
            "reason": "missing_grouphash",
        }

    def test_regression_of_another_project_is_not_blamed(self, caplog) -> None:
        regression = RegressionGroupFactory.create()
        other = ProjectFactory.create()
        caplog.set_level(logging.INFO, logger="regression_tracking")
        bulk_get_groups_from_fingerprints([(other.id, [issue_hash(regression)])])
        [record] = caplog.records
        assert record.levelno == logging.INFO

    def test_records_come_sorted_by_project_and_fingerprint(self, caplog) -> None:
        projects = sorted(ProjectFactory.create_batch(3), key=lambda p: p.id)
        regressions = [RegressionGroupFactory.create(project=p) for p in reversed(projects)]
        caplog.set_level(logging.INFO, logger="regression_tracking")
        bulk_get_groups_from_fingerprints([(r.project_id, [issue_hash(r)]) for r in regressions])
        assert [r.project_id for r in caplog.records] == [p.id for p in projects]

    def test_found_pairs_log_nothing(self, caplog) -> None:
        regression = RegressionGroupFactory.create()
        create_issue_for(regression)
        caplog.set_level(logging.DEBUG, logger="regression_tracking")
        bulk_get_groups_from_fingerprints([(regression.project_id, [issue_hash(regression)])])
        assert caplog.records == []


class TestIssueGroupsForRegressions:
    def test_returns_each_live_group_or_none_in_one_lookup(
        self, caplog, django_assert_num_queries
    ) -> None:
        linked = RegressionGroupFactory.create()
        grouphash = create_issue_for(linked)
        orphan = RegressionGroupFactory.create(type=RegressionType.FUNCTION, fingerprint="ff")
        caplog.set_level(logging.WARNING, logger="regression_tracking")
        # The caller holds the RegressionGroups: the orphan costs no second statement.
        with django_assert_num_queries(1):
            groups = get_issue_groups_for_regressions([linked, orphan])
        assert groups == {linked.id: grouphash.group, orphan.id: None}
        [record] = caplog.records
        assert record.regression_group_ids == [orphan.id]

    def test_all_linked_costs_one_statement(self, django_assert_num_queries) -> None:
        regressions = RegressionGroupFactory.create_batch(5)
        for regression in regressions:
            create_issue_for(regression)
        with django_assert_num_queries(1):
            groups = get_issue_groups_for_regressions(regressions)
        assert all(group is not None for group in groups.values())

    def test_one_warning_per_orphan_naming_only_the_held_regressions(self, caplog) -> None:
        orphan = RegressionGroupFactory.create()
        # An older version of the same key, which the caller does not hold: not queried.
        RegressionGroupFactory.create(
            project=orphan.project, fingerprint=orphan.fingerprint, version=2, active=False
        )
        discarded = RegressionGroupFactory.create(project=orphan.project)
        create_grouphash_without_group(discarded)
        caplog.set_level(logging.INFO, logger="regression_tracking")
        get_issue_groups_for_regressions([orphan, discarded])
        records = sorted(caplog.records, key=lambda r: r.regression_group_ids)
        assert [(r.levelno, r.getMessage()) for r in records] == [
            (logging.WARNING, MISSING_ISSUE_GROUP_MESSAGE)
        ] * 2
        assert [(r.regression_group_ids, r.reason) for r in records] == [
            ([orphan.id], "missing_grouphash"),
            ([discarded.id], "grouphash_without_group"),
        ]

    def test_orphans_are_counted_as_not_found(self, metrics_backend) -> None:
        orphans = RegressionGroupFactory.create_batch(3)
        get_issue_groups_for_regressions(orphans)
        assert metrics_backend.calls == [(NOT_FOUND_METRIC, 3, None)]


class TestLookupIssueGroups:
    def test_reasons_come_from_the_grouphashes_read(self, django_assert_num_queries) -> None:
        missing, discarded, linked = RegressionGroupFactory.create_batch(3)
        create_grouphash_without_group(discarded)
        grouphash = create_issue_for(linked)
        pairs = [(r.project_id, [issue_hash(r)]) for r in (missing, discarded, linked)]
        with django_assert_num_queries(1):
            lookup = lookup_issue_groups(pairs)
        assert lookup.groups == {(linked.project_id, (issue_hash(linked),)): grouphash.group}
        assert len(lookup.missing) == 2
        assert lookup.reason(pairs_key(missing)) == OrphanReason.MISSING_GROUPHASH
        assert lookup.reason(pairs_key(discarded)) == OrphanReason.GROUPHASH_WITHOUT_GROUP

    def test_logs_nothing(self, caplog) -> None:
        orphan = RegressionGroupFactory.create()
        caplog.set_level(logging.DEBUG, logger="regression_tracking")
        lookup_issue_groups([(orphan.project_id, [issue_hash(orphan)])])
        assert caplog.records == []


class TestSqliteVariableLimit:
    """SQLite refuses a statement with more variables than its limit: the lookup chunks."""

    @pytest.fixture
    def small_limit(self, monkeypatch) -> int:
        from django.db import connection

        if connection.vendor != "sqlite":
            # PostgreSQL sends the keys as two arrays: one statement, no limit to chunk for.
            return 0
        monkeypatch.setattr(lookup_module, "_sqlite_variable_limit", lambda connection: 10)
        return 10

    def test_large_input_is_chunked_and_every_pair_resolves(
        self, small_limit, django_assert_num_queries, metrics_backend
    ) -> None:
        from django.db import connection

        projects = ProjectFactory.create_batch(3)
        grouphashes = [
            GroupHashFactory.create(project=projects[i % 3], hash=md5(f"chunk-{i}"))
            for i in range(20)
        ]
        pairs = [(g.project_id, [g.hash]) for g in grouphashes]
        # 20 keys over 3 projects; at most 10 variables per statement on SQLite.
        statements = 1 if connection.vendor == "postgresql" else 3
        with django_assert_num_queries(statements):
            result = bulk_get_groups_from_fingerprints(pairs)
        assert {key: group.id for key, group in result.items()} == {
            (g.project_id, (g.hash,)): g.group_id for g in grouphashes
        }
        assert metrics_backend.calls == []

    def test_chunks_never_exceed_the_limit(self) -> None:
        keys = sorted((p, md5(f"k-{i}")) for p in range(5) for i in range(7))
        chunks = list(lookup_module._chunked_keys(keys, 6))
        assert sorted(k for chunk in chunks for k in chunk) == keys
        assert all(len({p for p, _ in c}) + len({h for _, h in c}) <= 6 for c in chunks)

    def test_130k_pairs_on_any_database(self, caplog) -> None:
        project = ProjectFactory.create()
        pairs = [(project.id, [md5(f"missing-{i}")]) for i in range(130_000)]
        caplog.set_level(logging.WARNING, logger="regression_tracking")
        assert bulk_get_groups_from_fingerprints(pairs) == {}
        assert caplog.records == []


def test_database_md5_matches_python_for_non_ascii(db) -> None:
    regression = RegressionGroupFactory.create(fingerprint="é/日本/ü")
    annotated = type(regression).objects.annotate(h=MD5("fingerprint")).get(id=regression.id)
    assert annotated.h == md5("é/日本/ü")
