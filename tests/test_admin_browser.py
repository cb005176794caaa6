"""The orphan admin in a real browser: Playwright's sync API driving Debian's Chromium.

Chromium is part of the project's set-up (``.ci/run`` installs it; ``make test`` says how when it is
missing), so this test fails, never skips, without it. The screenshot of the final page is kept in
``artifacts/admin_deactivate.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from playwright.sync_api import Page, sync_playwright

from regression_tracking.models import RegressionGroup
from tests.factories import (
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_linked_regression,
)

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
SCREENSHOT = ARTIFACTS / "admin_deactivate.png"
# Generous for a loaded CI machine; a healthy page settles in well under a second.
TIMEOUT_MS = 15_000
PASSWORD = "operator-password"


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@contextmanager
def chromium_page() -> Iterator[Page]:
    """A page of a fresh headless Debian Chromium."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1920, "height": 800})
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture
def operator() -> User:
    """A staff user (not a superuser) who may view, deactivate and delete RegressionGroups."""
    user = User.objects.create_user("operator", password=PASSWORD, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="regression_tracking",
            codename__in=[
                "view_regressiongroup",
                "change_regressiongroup",
                "delete_regressiongroup",
            ],
        )
    )
    return user


def active_cell_of(page: Page, regression: RegressionGroup) -> Any:
    row = page.locator("#result_list tbody tr").filter(
        has=page.get_by_role("link", name=str(regression.id), exact=True)
    )
    return row.locator("td.field-active img")


def test_operator_deactivates_orphans_from_the_filtered_list(
    live_server: Any, operator: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django refuses ORM calls in a thread with a running event loop, and Playwright's sync API
    # runs one here. The ORM work below stays outside the browser block anyway: inside it Django
    # would hand this thread another connection (asgiref's context-local storage) that nothing
    # closes, and the test database could not be dropped.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    project = ProjectFactory.create(slug="checkout")
    two_days_ago = timezone.now() - timedelta(days=2)
    linked = create_linked_regression(project=project, date_added=two_days_ago)
    missing = RegressionGroupFactory.create(project=project, date_added=two_days_ago)
    discarded = RegressionGroupFactory.create(project=project, date_added=two_days_ago)
    create_grouphash_without_group(discarded)
    recent = RegressionGroupFactory.create(
        project=project, date_added=timezone.now() - timedelta(hours=1)
    )

    with chromium_page() as page:
        page.goto(f"{live_server.url}/admin/regression_tracking/regressiongroup/")
        page.fill("#id_username", operator.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/regression_tracking/regressiongroup/")
        assert page.locator("#result_list tbody tr").count() == 4

        page.get_by_role("link", name="Orphan (any reason)").click()
        page.wait_for_url("**/regressiongroup/?issue=orphan")
        assert page.locator("#result_list tbody tr").count() == 3
        for regression in (missing, discarded, recent):
            assert active_cell_of(page, regression).get_attribute("alt") == "True"

        page.check("#action-toggle")
        page.select_option("select[name=action]", "deactivate_selected_orphans")
        page.get_by_role("button", name="Go").click()

        message = page.locator("ul.messagelist li.success")
        message.wait_for()
        assert message.inner_text() == (
            "Deactivated 2 of 3 selected regression groups; left alone 1: 1 too recent"
            " (added less than 24h ago)."
        )
        assert page.url.endswith("/regressiongroup/?issue=orphan")
        assert active_cell_of(page, missing).get_attribute("alt") == "False"
        assert active_cell_of(page, discarded).get_attribute("alt") == "False"
        assert active_cell_of(page, recent).get_attribute("alt") == "True"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOT, full_page=True)

    active = dict(RegressionGroup.objects.values_list("id", "active"))
    assert active == {linked.id: True, missing.id: False, discarded.id: False, recent.id: True}
