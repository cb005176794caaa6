"""The orphan overview in a real browser (Playwright driving Debian's Chromium), JavaScript off.

Like tests/test_admin_browser.py this fails, never skips, without ``/usr/bin/chromium``. The
screenshot of the page is kept in ``artifacts/admin-overview.png``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from playwright.sync_api import Page, sync_playwright

from regression_tracking.models import RegressionType
from tests.factories import (
    ProjectFactory,
    RegressionGroupFactory,
    create_grouphash_without_group,
    create_linked_regression,
)
from tests.test_admin_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, PASSWORD, TIMEOUT_MS

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOT = ARTIFACTS / "admin-overview.png"
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1600, 900
# The admin's --primary colour (#79aec8), which the bars are filled with.
PRIMARY = "rgb(121, 174, 200)"


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@contextmanager
def page_without_javascript() -> Iterator[Page]:
    """A page of a fresh headless Debian Chromium with JavaScript disabled."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT},
                device_scale_factor=1,
                java_script_enabled=False,
            )
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert header[12:16] == b"IHDR"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_operator_reads_the_overview_and_opens_a_bar(
    live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Playwright's sync API runs an event loop in this thread; the ORM work stays outside the
    # browser block (see tests/test_admin_browser.py).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    viewer = User.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_regressiongroup"))
    checkout = ProjectFactory.create(slug="checkout")
    search = ProjectFactory.create(slug="search")
    days_ago = timezone.now() - timedelta(days=2)
    create_linked_regression(project=checkout, date_added=days_ago)
    for _ in range(3):
        RegressionGroupFactory.create(project=checkout, date_added=days_ago)
    discarded = RegressionGroupFactory.create(
        project=search, date_added=days_ago, type=RegressionType.FUNCTION
    )
    create_grouphash_without_group(discarded)
    RegressionGroupFactory.create(project=search, date_added=timezone.now() - timedelta(hours=1))
    SCREENSHOT.unlink(missing_ok=True)

    with page_without_javascript() as page:
        page.goto(f"{live_server.url}/admin/regression_tracking/regressiongroup/")
        page.fill("#id_username", viewer.username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.get_by_role("link", name="Orphan overview").click()
        page.wait_for_url("**/regressiongroup/overview/")

        assert page.title() == "Orphan overview | Django site admin"
        assert page.locator(".summary li").all_inner_texts() == [
            "6 regression groups",
            "5 orphans",
            "5 active orphans (each blocks new regression issues for its endpoint or function)",
            "4 orphans past the 24h grace period (what a default cleanup acts on)",
        ]
        reason = page.get_by_role("img", name="Orphans by reason")
        assert reason.locator("desc").text_content() == (
            "missing_grouphash: 4; grouphash_without_group: 1"
        )
        assert reason.locator("text.label").all_text_contents() == [
            "missing_grouphash",
            "grouphash_without_group",
        ]
        assert reason.locator("text.value").all_text_contents() == ["4", "1"]
        projects = page.get_by_role("img", name="Top 2 projects by orphans")
        assert projects.locator("text.value").all_text_contents() == ["3", "2"]
        # Drawn and styled: the largest bar spans the whole bar area in the admin's colour.
        largest = reason.locator("rect").first
        box = largest.bounding_box()
        assert box is not None
        assert box["width"] == 360
        assert largest.evaluate("rect => getComputedStyle(rect).fill") == PRIMARY
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOT, full_page=True)

        # An SVG link, no script: the bar opens the regression groups it counts.
        projects.locator("a.bar").filter(has_text="search").click()
        page.wait_for_url("**/regressiongroup/?issue=orphan&project__id__exact=*")
        assert page.locator("#result_list tbody tr").count() == 2

    width, height = png_size(SCREENSHOT)
    assert width == VIEWPORT_WIDTH
    assert height >= VIEWPORT_HEIGHT
    assert SCREENSHOT.stat().st_size > 10_000
