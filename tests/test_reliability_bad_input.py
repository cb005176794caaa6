"""Bad input everywhere: every option malformed, fuzzed lookups and fingerprints, broken backups.

Bad input gets a clear error naming the problem and changes nothing. The command's
options are run as from a shell (``run_from_argv``: exit status, stderr), against a world in which
any run that went ahead would change the tables. Runs on PostgreSQL and SQLite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regression_tracking.fingerprints import (
    ENDPOINT_FINGERPRINT_PREFIX,
    fingerprint_regression,
    generate_fingerprint,
    generate_issue_group_key,
    hash_fingerprint,
)
from regression_tracking.models import Group, GroupHash, RegressionGroup, RegressionType
from regression_tracking.services import (
    NOT_FOUND_METRIC,
    BackupWriter,
    bulk_get_groups_from_fingerprints,
)
from tests.factories import GroupFactory, ProjectFactory
from tests.reliability import build_world, database_checksum, record_figures

pytestmark = pytest.mark.django_db

# Hypothesis examples per fuzz test: bounded, and well inside the suite's time budget.
CLI_FUZZ_EXAMPLES = 300
LOOKUP_FUZZ_EXAMPLES = 300
FINGERPRINT_FUZZ_EXAMPLES = 300
BACKUP_FUZZ_EXAMPLES = 150

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
HEX = "0123456789abcdef"

BAD_INPUTS_TRIED: dict[str, int] = {}

INJECTION = "1; DROP TABLE sentry_regressiongroup; --"
QUOTE_INJECTION = "' OR '1'='1"


@pytest.fixture
def world() -> Any:
    """Old orphans, a linked row, recent orphans: any run that went ahead would change a table."""
    return build_world(orphans=4, linked=2, recent=2, discarded=1, projects=2)


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Path:
    """A folder nobody can create files in: root ignores permission bits, so /proc then."""
    if os.geteuid() == 0:
        return Path("/proc")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


def _bad_option_cases(tmp_path: Path, unwritable: Path) -> list[tuple[list[str], int, str]]:
    """(arguments, exit status, what stderr must say) for every option."""
    huge = "9" * 30
    cases: list[tuple[list[str], int, str]] = []
    for value in ["-1h", "5", "1w", "1.5h", "1h30m", "", " ", "nan", "99999999999d", "36501d"]:
        cases.append(([f"--min-age={value}"], 2, "argument --min-age:"))
    for value in [INJECTION, QUOTE_INJECTION, "0x10s", "1e3s", "PT1H"]:
        cases.append(([f"--min-age={value}"], 2, "argument --min-age: invalid duration"))
    for value in ["0", "0s", "-5m", "forever", "99999999999d", INJECTION]:
        cases.append(([f"--max-runtime={value}"], 2, "argument --max-runtime:"))
    for value in ["0", "-1"]:
        cases.append(([f"--max-rows={value}"], 2, "argument --max-rows: must be at least 1"))
    for value in ["0", "-1", "abc", "1.5", "", str(2**63), huge, "1 OR 1=1", INJECTION, "0x10"]:
        cases.append(([f"--project={value}"], 2, "argument --project:"))
    for value in ["424242", str(2**63 - 1)]:
        cases.append(
            (
                [f"--project={value}"],
                1,
                f"--project: no project and no regression groups with id {value}",
            )
        )
    for value in ["span", "ENDPOINT", "0", QUOTE_INJECTION, ""]:
        cases.append(([f"--type={value}"], 2, "argument --type: invalid choice"))
    for value in ["0", "-5", "ten", "", "2.5", "1e3", str(2**63), huge]:
        cases.append(([f"--batch-size={value}"], 2, "argument --batch-size:"))
    for value in ["10001", str(2**40), "0", "-5"]:
        # 10001 exited 1, 0 exited 2; both are out of range, a usage error.
        cases.append(
            ([f"--batch-size={value}"], 2, "argument --batch-size: must be between 1 and 10000")
        )
    # Digits of other scripts were read as numbers ("\u0667d" as 7 days).
    for option, value in [
        ("--min-age", "\u0667d"),
        ("--min-age", "\uff11h"),
        ("--max-runtime", "\u0663h"),
        ("--batch-size", "\u0661\u0660"),
        ("--max-rows", "\u0967"),
        ("--project", "\u0661"),
        ("--start-after-id", "\u0660"),
        ("--sleep", "\u0661"),
        ("--shard", "\u0660/2"),
    ]:
        cases.append(([f"{option}={value}"], 2, f"argument {option}:"))
    for value in ["0", "-1", huge, "1e3", "abc", INJECTION]:
        cases.append(([f"--max-rows={value}"], 2, "argument --max-rows:"))
    for value in ["-1", "nan", "inf", "-inf", "3601", "abc", "", "1e400", INJECTION]:
        cases.append(([f"--sleep={value}"], 2, "argument --sleep:"))
    for value in ["-1", "abc", huge, "1.0", "", INJECTION]:
        cases.append(([f"--start-after-id={value}"], 2, "argument --start-after-id:"))
    for value in ["3/3", "1", "a/b", "0/0", "0/2000", "-1/2", "", "0/2; DROP TABLE x", "1/2/3"]:
        cases.append(([f"--shard={value}"], 2, "argument --shard:"))
    for value in ["purge", "", "DELETE", f"delete; {INJECTION}"]:
        cases.append(([f"--action={value}"], 2, "argument --action: invalid choice"))
    for value in ["xml", "", "JSON"]:
        cases.append(([f"--format={value}"], 2, "argument --format: invalid choice"))
    for value in ["nope", "", f"default{QUOTE_INJECTION}"]:
        cases.append(([f"--database={value}"], 1, "--database: unknown database alias"))
    cases += [
        (["--verbosity=9"], 2, "argument -v/--verbosity: invalid choice"),
        (["--yes"], 2, "unrecognized arguments: --yes"),
        (["--min-age"], 2, "argument --min-age: expected one argument"),
        (["--backup", str(tmp_path)], 1, f"--backup: {tmp_path} is a directory"),
        (["--backup", ""], 1, "--backup:  is a directory"),
        (["--backup", str(tmp_path / "no" / "b.jsonl")], 1, "--backup: cannot write to"),
        (["--backup", str(unwritable / "b.jsonl")], 1, "--backup: cannot write to"),
        (["--backup", str(tmp_path / "no" / "b.jsonl"), "--dry-run"], 1, "--backup: cannot write"),
        (["--backup", str(unwritable / "b.jsonl"), "--dry-run"], 1, "--backup: cannot write to"),
        (["--metrics-textfile", str(tmp_path)], 1, "--metrics-textfile: "),
        (["--metrics-textfile", str(tmp_path / "no" / "m.prom")], 1, "--metrics-textfile: cannot"),
        (["--metrics-textfile", str(unwritable / "m.prom")], 1, "--metrics-textfile: cannot write"),
    ]
    return cases


def test_every_option_malformed_exits_1_or_2_naming_it_and_changes_nothing(
    world, run_cli, tmp_path, unwritable_dir
) -> None:
    before = database_checksum()
    cases = _bad_option_cases(tmp_path, unwritable_dir)
    failures = []
    for args, status, message in cases:
        code, out, err = run_cli(*args)
        if (code, out) != (status, "") or message not in err or "Traceback" in err:
            failures.append((args, code, err.strip().splitlines()[-1:] if err else out))
        assert database_checksum() == before, args
    assert failures == []
    assert not (tmp_path / "no").exists()
    BAD_INPUTS_TRIED["command options"] = len(cases)
    record_figures("bad_input", **BAD_INPUTS_TRIED)


OPTIONS_TO_FUZZ = [
    "--min-age",
    "--max-runtime",
    "--project",
    "--type",
    "--batch-size",
    "--max-rows",
    "--sleep",
    "--start-after-id",
    "--shard",
    "--action",
    "--format",
    "--database",
]
option_values = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"-?[0-9]{1,25}[smhdw]?", fullmatch=True),
    st.from_regex(r"[0-9]{1,4}/[0-9]{1,4}", fullmatch=True),
    st.sampled_from([INJECTION, QUOTE_INJECTION, "NaN", "1e309", "0", "-0", "\u0663h", "\uff11"]),
)


def test_fuzzed_option_values_never_crash_and_never_change_anything(world, run_cli) -> None:
    before = database_checksum()
    tried = 0

    @settings(FUZZ, max_examples=CLI_FUZZ_EXAMPLES)
    @given(option=st.sampled_from(OPTIONS_TO_FUZZ), value=option_values)
    def fuzz(option: str, value: str) -> None:
        nonlocal tried
        tried += 1
        code, _out, err = run_cli("--dry-run", "-v", "0", f"{option}={value}")
        assert code in (0, 1, 2)
        if code:
            assert option in err
        assert "Traceback" not in err
        assert database_checksum() == before

    fuzz()
    BAD_INPUTS_TRIED["fuzzed option values"] = tried
    record_figures("bad_input", **BAD_INPUTS_TRIED)


# The lookup: a correct result, or TypeError/ValueError before any query; never a database error.


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


KNOWN_HASHES = [md5(f"fingerprint-{n}") for n in range(6)]


@pytest.fixture
def issues() -> dict[tuple[int, str], int | None]:
    """GroupHashes in three projects: live, without group, and one hash shared by two projects."""
    projects = ProjectFactory.create_batch(3)
    layout = {
        (0, 0): "live",
        (0, 1): "without_group",
        (0, 2): "live",
        (1, 0): "live",
        (1, 3): "without_group",
        (2, 4): "live",
    }
    key_to_group: dict[tuple[int, str], int | None] = {}
    for (p, h), state in layout.items():
        project = projects[p]
        group = GroupFactory.create(project=project) if state == "live" else None
        GroupHash.objects.create(project=project, hash=KNOWN_HASHES[h], group=group)
        key_to_group[(project.id, KNOWN_HASHES[h])] = group.id if group else None
    return key_to_group


def _valid_pair(project_ids: list[int]) -> st.SearchStrategy[Any]:
    project = st.sampled_from(project_ids) | INT64
    hash_ = st.sampled_from(KNOWN_HASHES) | st.text(HEX, min_size=32, max_size=32)
    fingerprint = st.lists(hash_, min_size=1, max_size=4)
    pair = st.tuples(project, fingerprint | fingerprint.map(tuple))
    return pair | pair.map(list)


def _bad_part() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=40).filter(lambda s: not (len(s) == 32 and set(s) <= set(HEX))),
        st.text("0123456789ABCDEF", min_size=32, max_size=32).filter(lambda s: s != s.lower()),
        st.text(HEX, max_size=64).filter(lambda s: len(s) != 32),
        st.sampled_from([INJECTION, QUOTE_INJECTION, "\x00" * 32, KNOWN_HASHES[0] + "\n"]),
        st.integers(),
        st.none(),
        st.binary(min_size=32, max_size=32),
    )


def _bad_item(project_ids: list[int]) -> st.SearchStrategy[Any]:
    project = st.sampled_from(project_ids)
    hashes = st.lists(st.sampled_from(KNOWN_HASHES), min_size=1, max_size=3)
    bad_project = st.one_of(
        st.text(max_size=10), st.floats(), st.booleans(), st.none(), st.just(str(project_ids[0]))
    )
    bad_fingerprint = st.one_of(
        st.text(max_size=40),
        st.binary(max_size=40),
        st.none(),
        st.integers(),
        st.just([]),
        st.just(()),
        st.sets(st.sampled_from(KNOWN_HASHES), min_size=1),
        st.dictionaries(st.sampled_from(KNOWN_HASHES), st.integers(), min_size=1),
    )
    with_bad_part = st.tuples(hashes, _bad_part(), st.integers(0, 3)).map(
        lambda t: [*t[0][: t[2]], t[1], *t[0][t[2] :]]
    )
    return st.one_of(
        st.tuples(bad_project, hashes),
        st.tuples(project, bad_fingerprint),
        st.tuples(project, with_bad_part),
        st.text(max_size=10),
        st.binary(max_size=10),
        st.none(),
        st.integers(),
        st.tuples(project),
        st.tuples(project, hashes, hashes),
        st.dictionaries(st.integers(), st.integers(), max_size=2),
    )


def _expected(pairs: list[Any], issues: dict[tuple[int, str], int | None]) -> dict[Any, int]:
    """The oracle: for each pair, the group of the first hash (in list order) that is live."""
    expected = {}
    for project_id, fingerprint in pairs:
        for hash_ in fingerprint:
            if (group_id := issues.get((project_id, hash_))) is not None:
                expected[(project_id, tuple(fingerprint))] = group_id
                break
    return expected


def test_fuzzed_lookups_give_the_right_groups_or_a_type_or_value_error(
    issues, metrics_backend, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="regression_tracking")
    project_ids = sorted({project_id for project_id, _hash in issues})
    tried = {"valid": 0, "bad": 0}

    good_items = _valid_pair(project_ids).map(lambda p: (True, p))
    bad_items = _bad_item(project_ids).map(lambda p: (False, p))

    @settings(FUZZ, max_examples=LOOKUP_FUZZ_EXAMPLES)
    @given(
        items=st.lists(good_items, max_size=8)
        | st.lists(good_items | bad_items, min_size=1, max_size=8)
    )
    def fuzz(items: list[tuple[bool, Any]]) -> None:
        pairs = [item for _valid, item in items]
        all_valid = all(valid for valid, _item in items)
        tried["valid" if all_valid else "bad"] += 1
        not_found_before = metrics_backend.total(NOT_FOUND_METRIC)
        with CaptureQueriesContext(connection) as queries:
            try:
                result = bulk_get_groups_from_fingerprints(iter(pairs))
            except (TypeError, ValueError):
                assert not all_valid
                assert len(queries) == 0, "bad input must be refused before any query"
                return
            except DatabaseError as error:
                pytest.fail(f"database error for {pairs!r}: {error!r}")
        assert all_valid, f"accepted bad input {pairs!r}"
        expected = _expected(pairs, issues)
        assert {key: group.id for key, group in result.items()} == expected
        assert all(isinstance(group, Group) for group in result.values())
        distinct = {(p, tuple(f)) for p, f in pairs}
        assert metrics_backend.total(NOT_FOUND_METRIC) - not_found_before == len(distinct) - len(
            expected
        )

    fuzz()
    for bad in (None, 5, 3.5, "pairs", b"pairs"):
        with pytest.raises(TypeError):
            bulk_get_groups_from_fingerprints(bad)
    BAD_INPUTS_TRIED["fuzzed lookups with bad input"] = tried["bad"] + 5
    BAD_INPUTS_TRIED["fuzzed lookups with good input"] = tried["valid"]
    record_figures("bad_input", **BAD_INPUTS_TRIED)
    assert tried["bad"]
    assert tried["valid"]


# Edges the fuzzing above stays clear of: a project id beyond bigint (no row can have it) and
# more projects than SQLite's expression depth would allow as one OR term each.


def test_lookup_with_a_project_id_beyond_bigint_finds_nothing() -> None:
    assert bulk_get_groups_from_fingerprints([(2**63, [KNOWN_HASHES[0]])]) == {}


def test_lookup_over_more_than_1000_projects_is_one_answer() -> None:
    pairs = [(project_id, [KNOWN_HASHES[0]]) for project_id in range(1, 1202)]
    assert bulk_get_groups_from_fingerprints(pairs) == {}


# The fingerprint functions: Sentry's formulas, or TypeError/ValueError.

anything = st.one_of(
    st.text(),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.binary(),
    st.lists(st.text(max_size=5), max_size=3),
)


def _utf8(value: object) -> bool:
    """A str with a UTF-8 form (no lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _expected_hashes(fingerprint: Any) -> list[str] | None:
    """Sentry's hash_fingerprint, or None where it must raise."""
    if isinstance(fingerprint, str):
        return None
    try:
        parts = list(fingerprint)
    except TypeError:
        return None
    if not all(_utf8(part) for part in parts):
        return None
    return [hashlib.md5(part.encode("utf-8")).hexdigest() for part in parts]


def _expected_fingerprint(regression_type: Any, name: Any) -> str | None:
    """Sentry's fingerprint of a regression, or None where it must raise."""
    if isinstance(regression_type, bool) or not isinstance(regression_type, int):
        return None
    if regression_type == RegressionType.ENDPOINT:
        if not _utf8(name):
            return None
        prehashed = f"{ENDPOINT_FINGERPRINT_PREFIX}{name}".encode()
        return hashlib.sha1(prehashed).hexdigest()
    if regression_type == RegressionType.FUNCTION:
        if isinstance(name, bool) or not isinstance(name, int | str):
            return None
        try:
            function_id = int(name)
        except ValueError:
            return None
        return f"{function_id:x}" if function_id >= 0 else None
    return None


FINGERPRINT_INPUTS_TRIED = {"good": 0, "bad": 0}


def _raises_or_equals(expected: object, call: Any, *args: Any) -> None:
    """``call(*args)`` gives ``expected``, or raises TypeError/ValueError when that is None."""
    FINGERPRINT_INPUTS_TRIED["bad" if expected is None else "good"] += 1
    try:
        value = call(*args)
    except (TypeError, ValueError):
        assert expected is None, f"{call.__name__}{args!r} raised, expected {expected!r}"
        return
    assert value == expected, f"{call.__name__}{args!r}"


def test_fuzzed_fingerprint_functions_give_sentrys_value_or_a_type_or_value_error() -> None:
    @settings(FUZZ, max_examples=FINGERPRINT_FUZZ_EXAMPLES)
    @given(
        fingerprint=st.one_of(
            st.lists(st.text()),
            st.tuples(st.text(), st.text()),
            st.lists(anything, max_size=3),
            anything,
        )
    )
    def fuzz_hash_fingerprint(fingerprint: Any) -> None:
        _raises_or_equals(_expected_hashes(fingerprint), hash_fingerprint, fingerprint)

    @settings(FUZZ, max_examples=FINGERPRINT_FUZZ_EXAMPLES)
    @given(
        regression_type=st.one_of(
            st.sampled_from(list(RegressionType)), st.integers(-3, 3), anything
        ),
        name=st.one_of(
            anything,
            st.integers(min_value=0),
            st.from_regex(r"\s*-?[0-9_]{1,30}\s*", fullmatch=True),
            # Beyond Python's default limit of 4300 digits for int(str).
            st.text("0123456789", min_size=4301, max_size=4400),
        ),
        full=st.booleans(),
    )
    def fuzz_fingerprints(regression_type: Any, name: Any, full: bool) -> None:
        expected = _expected_fingerprint(regression_type, name)
        _raises_or_equals(expected, generate_fingerprint, regression_type, name)
        endpoint = _expected_fingerprint(RegressionType.ENDPOINT, name)
        short = endpoint and endpoint[: 40 if full else 16]
        _raises_or_equals(short, fingerprint_regression, name, full)

    @settings(FUZZ, max_examples=FINGERPRINT_FUZZ_EXAMPLES)
    @given(project_id=st.one_of(INT64, st.integers(), anything), fingerprint=anything)
    def fuzz_issue_group_key(project_id: Any, fingerprint: Any) -> None:
        valid = isinstance(project_id, int) and not isinstance(project_id, bool)
        expected = None
        if valid and _utf8(fingerprint):
            expected = (project_id, hashlib.md5(fingerprint.encode()).hexdigest())
        _raises_or_equals(expected, generate_issue_group_key, project_id, fingerprint)

    fuzz_hash_fingerprint()
    fuzz_fingerprints()
    fuzz_issue_group_key()
    BAD_INPUTS_TRIED["fuzzed fingerprint calls with bad input"] = FINGERPRINT_INPUTS_TRIED["bad"]
    BAD_INPUTS_TRIED["fuzzed fingerprint calls with good input"] = FINGERPRINT_INPUTS_TRIED["good"]
    record_figures("bad_input", **BAD_INPUTS_TRIED)
    assert FINGERPRINT_INPUTS_TRIED["bad"]
    assert FINGERPRINT_INPUTS_TRIED["good"]


# Broken backups: a clear error with the line number, and nothing restored.


@pytest.fixture
def backup_file(tmp_path) -> tuple[Path, list[int]]:
    world = build_world(orphans=4, projects=2)
    path = tmp_path / "backup.jsonl"
    with BackupWriter(path) as writer:
        writer.write(RegressionGroup.objects.filter(id__in=world.eligible).order_by("id"))
    RegressionGroup.objects.all().delete()
    return path, world.eligible


def _restore(path: Path) -> str:
    out = StringIO()
    call_command("restore_regression_groups", str(path), stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("version", 2**63, "version: 9223372036854775808 is not a valid value"),
        ("type", -(2**63) - 1, "type: -9223372036854775809 is not a valid value"),
        ("id", 2**63, "id: 9223372036854775808 is not a valid value"),
        ("project_id", 2**64, "project_id: 18446744073709551616 is not a valid value"),
        ("fingerprint", "f" * 65, "fingerprint: 'fffff"),
        ("date_added", "0001-01-01T00:00:00+05:00", "date_added: '0001-01-01T00:00:00+05:00'"),
    ],
)
def test_values_the_database_cannot_store_name_their_line(backup_file, column, value, problem):
    path, _ids = backup_file
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = json.dumps({**json.loads(lines[2]), column: value}) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(
        CommandError, match=re.escape(f"line 3: {problem}") + ".*nothing was restored"
    ):
        _restore(path)
    assert not RegressionGroup.objects.exists()


def test_bytes_that_are_not_utf8_name_their_line(backup_file) -> None:
    path, _ids = backup_file
    data = path.read_bytes().split(b"\n")
    data[1] = data[1].replace(b'"fingerprint": "', b'"fingerprint": "\xff\xfe', 1)
    path.write_bytes(b"\n".join(data))
    with pytest.raises(CommandError, match=r"line 2: not UTF-8 .*nothing was restored"):
        _restore(path)
    assert not RegressionGroup.objects.exists()


def test_fuzzed_cut_or_corrupted_backups_restore_all_of_it_or_nothing(backup_file) -> None:
    path, ids = backup_file
    original = path.read_bytes()
    line_starts = [0, *(i + 1 for i, byte in enumerate(original) if byte == ord("\n"))]
    tried = 0

    def line_of(offset: int) -> int:
        return sum(1 for start in line_starts if start <= offset)

    @settings(FUZZ, max_examples=BACKUP_FUZZ_EXAMPLES)
    @given(
        offset=st.integers(0, len(original) - 1),
        mutation=st.sampled_from(["cut", "byte", "char"]),
        byte=st.integers(0, 255),
        char=st.characters(),
    )
    def fuzz(offset: int, mutation: str, byte: int, char: str) -> None:
        nonlocal tried
        tried += 1
        inserted = b""
        if mutation == "cut":
            data = original[:offset]
        elif mutation == "byte":
            inserted = bytes([byte])
            data = original[:offset] + inserted + original[offset + 1 :]
        else:
            inserted = char.encode("utf-8", "surrogatepass")
            data = original[:offset] + inserted + original[offset + 1 :]
        path.write_bytes(data)
        try:
            output = _restore(path)
        except CommandError as error:
            message = str(error)
            assert "nothing was restored" in message
            # An inserted newline splits the line: the bad half may be the next one.
            lines = {line_of(offset), line_of(offset) + inserted.count(b"\n")}
            named = any(f"line {line}:" in message for line in lines)
            assert named or "do not exist" in message, message
            assert not RegressionGroup.objects.exists()
            return
        restored = int(output.split("\n")[0].removeprefix("restored: "))
        assert RegressionGroup.objects.count() == restored
        if mutation == "cut":
            assert restored <= len(ids)
        RegressionGroup.objects.all().delete()

    fuzz()
    BAD_INPUTS_TRIED["cut or corrupted backups"] = tried
    record_figures("bad_input", **BAD_INPUTS_TRIED)
