"""Sentry's fingerprint hashing for regression issues (pure functions, no database)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from regression_tracking.models import RegressionType

ENDPOINT_FINGERPRINT_PREFIX = "p95_transaction_duration_regression-"


def hash_fingerprint(fingerprint: Sequence[str]) -> list[str]:
    """The issue platform's hash of each fingerprint part: its UTF-8 md5 as lowercase hex."""
    if isinstance(fingerprint, str):
        raise TypeError(
            f"fingerprint must be a sequence of strings, not a bare string: {fingerprint!r}"
        )
    hashes = []
    for part in fingerprint:
        if not isinstance(part, str):
            raise TypeError(
                f"fingerprint parts must be strings, got {type(part).__name__}: {part!r}"
            )
        hashes.append(hashlib.md5(part.encode("utf-8")).hexdigest())
    return hashes


def fingerprint_regression(transaction: str, full: bool = False) -> str:
    """An endpoint regression's fingerprint: sha1 hex of the prefixed transaction.

    Sentry's ``fingerprint_regression``: ``full=False`` keeps the first 16 characters;
    RegressionGroups store all 40.
    """
    if not isinstance(transaction, str):
        raise TypeError(
            f"transaction must be a string, got {type(transaction).__name__}: {transaction!r}"
        )
    prehashed = f"{ENDPOINT_FINGERPRINT_PREFIX}{transaction}"
    fingerprint = hashlib.sha1(prehashed.encode()).hexdigest()
    return fingerprint if full else fingerprint[:16]


def _function_fingerprint(function_id: int | str) -> str:
    if isinstance(function_id, bool) or not isinstance(function_id, int | str):
        raise TypeError(
            f"function id must be an int or a decimal string, got {type(function_id).__name__}: "
            f"{function_id!r}"
        )
    try:
        value = int(function_id)
    except ValueError:
        raise ValueError(f"function id is not an integer: {function_id!r}") from None
    if value < 0:
        raise ValueError(f"function id must not be negative: {function_id!r}")
    return f"{value:x}"


def generate_fingerprint(regression_type: RegressionType | int, name: str | int) -> str:
    """The RegressionGroup fingerprint of an endpoint (by transaction) or a function (by id)."""
    if isinstance(regression_type, bool) or not isinstance(regression_type, int):
        raise TypeError(f"unknown regression type: {regression_type!r}")
    if regression_type == RegressionType.ENDPOINT:
        if not isinstance(name, str):
            raise TypeError(
                f"an endpoint regression is named by its transaction string, got {name!r}"
            )
        return fingerprint_regression(name, full=True)
    if regression_type == RegressionType.FUNCTION:
        return _function_fingerprint(name)
    raise ValueError(f"unknown regression type: {regression_type!r}")


def generate_issue_group_key(project_id: int, fingerprint: str) -> tuple[int, str]:
    """The key a regression's issue is stored under: (project id, md5 of its fingerprint)."""
    if isinstance(project_id, bool) or not isinstance(project_id, int):
        raise TypeError(
            f"project id must be an int, got {type(project_id).__name__}: {project_id!r}"
        )
    return project_id, hash_fingerprint([fingerprint])[0]
