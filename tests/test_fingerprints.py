from __future__ import annotations

import hashlib

import pytest

from regression_tracking.fingerprints import (
    fingerprint_regression,
    generate_fingerprint,
    generate_issue_group_key,
    hash_fingerprint,
)
from regression_tracking.models import RegressionType

# sha1("p95_transaction_duration_regression-/api/health"), computed once outside this code.
SHA1_HEALTH = "b94620f03ec6b8d7804a33bdb72f0f0dc7b1c02e"


class TestHashFingerprint:
    def test_each_part_is_its_utf8_md5_in_lowercase_hex(self) -> None:
        assert hash_fingerprint(["abc", ""]) == [
            "900150983cd24fb0d6963f7d28e17f72",
            "d41d8cd98f00b204e9800998ecf8427e",
        ]

    def test_non_ascii_part_is_hashed_as_utf8(self) -> None:
        assert hash_fingerprint(["é"]) == ["66ddcd97cfdeabb2f6fb8a999b4bc76f"]

    def test_empty_fingerprint_hashes_to_empty_list(self) -> None:
        assert hash_fingerprint([]) == []

    def test_bare_string_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="bare string"):
            hash_fingerprint("abc")

    def test_non_string_part_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="parts must be strings"):
            hash_fingerprint(["a", 1])


class TestFingerprintRegression:
    def test_full_is_the_sha1_of_the_prefixed_transaction(self) -> None:
        assert fingerprint_regression("/api/health", full=True) == SHA1_HEALTH

    def test_default_is_the_first_16_characters(self) -> None:
        assert fingerprint_regression("/api/health") == SHA1_HEALTH[:16]

    def test_non_ascii_transaction(self) -> None:
        transaction = "/api/café/日本"
        expected = hashlib.sha1(
            ("p95_transaction_duration_regression-" + transaction).encode("utf-8")
        ).hexdigest()
        assert fingerprint_regression(transaction, full=True) == expected

    def test_non_string_transaction_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="transaction must be a string"):
            fingerprint_regression(42)


class TestGenerateFingerprint:
    def test_endpoint_uses_the_full_sha1(self) -> None:
        assert generate_fingerprint(RegressionType.ENDPOINT, "/api/health") == SHA1_HEALTH

    @pytest.mark.parametrize(
        ("function_id", "expected"),
        [(0, "0"), (255, "ff"), ("255", "ff"), (2**64 - 1, "ffffffffffffffff"), (4096, "1000")],
    )
    def test_function_is_the_unpadded_hex_of_its_id(self, function_id, expected) -> None:
        assert generate_fingerprint(RegressionType.FUNCTION, function_id) == expected

    def test_plain_int_types_are_accepted(self) -> None:
        assert generate_fingerprint(1, 10) == "a"
        assert generate_fingerprint(0, "/x") == fingerprint_regression("/x", full=True)

    @pytest.mark.parametrize("regression_type", [2, -1, 99])
    def test_unknown_type_is_a_value_error(self, regression_type) -> None:
        with pytest.raises(ValueError, match="unknown regression type"):
            generate_fingerprint(regression_type, "x")

    @pytest.mark.parametrize("regression_type", ["endpoint", None, True, 1.0])
    def test_non_integer_type_is_a_type_error(self, regression_type) -> None:
        with pytest.raises(TypeError, match="unknown regression type"):
            generate_fingerprint(regression_type, "x")

    @pytest.mark.parametrize("function_id", ["abc", "0x1f", "1.5", ""])
    def test_non_integer_function_id_is_a_value_error(self, function_id) -> None:
        with pytest.raises(ValueError, match="function id is not an integer"):
            generate_fingerprint(RegressionType.FUNCTION, function_id)

    @pytest.mark.parametrize("function_id", [1.5, None, True, [1]])
    def test_function_id_of_wrong_type_is_a_type_error(self, function_id) -> None:
        with pytest.raises(TypeError, match="function id must be"):
            generate_fingerprint(RegressionType.FUNCTION, function_id)

    def test_negative_function_id_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="must not be negative"):
            generate_fingerprint(RegressionType.FUNCTION, -5)

    def test_endpoint_name_must_be_a_string(self) -> None:
        with pytest.raises(TypeError, match="transaction string"):
            generate_fingerprint(RegressionType.ENDPOINT, 5)


class TestGenerateIssueGroupKey:
    def test_is_the_project_and_the_md5_of_the_fingerprint(self) -> None:
        assert generate_issue_group_key(7, SHA1_HEALTH) == (
            7,
            hashlib.md5(SHA1_HEALTH.encode()).hexdigest(),
        )
        assert generate_issue_group_key(7, "") == (7, "d41d8cd98f00b204e9800998ecf8427e")

    def test_function_fingerprint_key(self) -> None:
        assert generate_issue_group_key(3, "ff") == (3, "633de4b0c14ca52ea2432a3c8a5c4c31")

    @pytest.mark.parametrize("project_id", ["7", 7.0, True, None])
    def test_project_id_must_be_an_int(self, project_id) -> None:
        with pytest.raises(TypeError, match="project id must be an int"):
            generate_issue_group_key(project_id, "ff")
