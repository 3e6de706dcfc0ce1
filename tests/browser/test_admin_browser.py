"""End to end in headless Chromium: the admin, the live dashboard and the example page.

Driven by Playwright's Python package against Debian's ``chromium`` (no
browser download). Skipped when ``/usr/bin/chromium`` or Playwright is
missing. A real ``manage.py taskworker`` runs the tasks.

``DJTASKS_SCREENSHOTS=docs/_static pytest tests/browser`` also writes the
dashboard and task-detail screenshots the README shows.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from djtasks import serialization, states
from djtasks.admin.task_detail import RETRY_OF_HEADER
from djtasks.ids import uuid7
from djtasks.models import TaskRecord
from tests.support import ROOT, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
    ),
    pytest.mark.django_db(transaction=True),
]
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs the playwright package (pip install -e '.[test]')"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Playwright's sync API keeps an event loop on this thread while it runs;
    # the ORM calls of the tests (and of the database teardown) in between
    # browser steps are still plain synchronous code.
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def admin_login(page: Any, live_server: Any) -> Callable[[], None]:
    def login() -> None:
        User.objects.create_superuser("admin", "admin@example.com", "secret-pw")
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "secret-pw")
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")

    return login


def card_count(page: Any, state: str) -> int:
    return int(
        page.locator(f'.djtasks-card[data-state="{state}"] .djtasks-card-value').inner_text()
    )


def test_dashboard_follows_a_task_from_pending_to_success(
    page: Any, live_server: Any, admin_login: Callable[[], None], worker: Callable[..., Any]
) -> None:
    from tests.testapp.tasks import add

    admin_login()
    result = add.delay(2, 3)  # no worker yet: it waits
    page.goto(f"{live_server.url}/admin/djtasks/taskrecord/dashboard/")
    page.select_option("#djtasks-interval", "2")
    assert card_count(page, "PENDING") == 1
    assert card_count(page, "SUCCESS") == 0
    page.evaluate("window.djtasksSamePage = true")  # gone if the page reloads

    worker(concurrency=1, pool="threads")
    page.wait_for_function(
        '() => document.querySelector(\'.djtasks-card[data-state="SUCCESS"] '
        ".djtasks-card-value').textContent.trim() === '1'",
        timeout=20_000,
    )
    assert card_count(page, "PENDING") == 0
    assert page.evaluate("window.djtasksSamePage") is True
    assert result.get(timeout=5) == 5
    assert "tests.testapp.tasks.add" in page.locator('[data-section="runtimes"]').inner_text()
    assert page.locator('[data-section="workers"] .djtasks-state-success').count() == 1


def test_bulk_retry_from_the_task_list(
    page: Any, live_server: Any, admin_login: Callable[[], None]
) -> None:
    now = timezone.now()
    failed = [
        TaskRecord.objects.create(
            id=uuid7(),
            name="tests.testapp.tasks.add",
            payload="[[1, 2], {}]",
            state=states.FAILURE,
            created_at=now,
            eta=now,
            done_at=now,
            exc_type="builtins.ValueError",
            exc_message="boom",
        )
        for _ in range(3)
    ]
    admin_login()
    page.goto(f"{live_server.url}/admin/djtasks/taskrecord/?state=FAILURE")
    assert page.locator("#result_list tbody tr").count() == 3
    page.check("#action-toggle")
    page.select_option("select[name=action]", "retry_tasks")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist .success")
    assert "Enqueued 3 new task(s)" in page.locator(".messagelist").inner_text()
    copies = TaskRecord.objects.filter(state=states.PENDING)
    assert sorted(c.headers[RETRY_OF_HEADER] for c in copies) == sorted(str(t.id) for t in failed)


def test_example_page_progress_bar_reaches_100(
    page: Any, live_server: Any, worker: Callable[..., Any]
) -> None:
    worker(concurrency=2, pool="threads")
    page.goto(f"{live_server.url}/")
    seen: list[float] = []
    page.click("#report")
    bar = page.locator("#tasks .task progress").first
    state = page.locator("#tasks .task .djtasks-progress-state").first

    def finished() -> bool:
        value = bar.evaluate("el => el.hasAttribute('value') ? el.value : -1")
        seen.append(value)
        return state.inner_text() == "SUCCESS"

    wait_until(finished, timeout=25, interval=0.2, message="the report's bar to finish")
    assert bar.evaluate("el => el.value") == 100
    assert page.locator("#tasks .task .djtasks-progress-percent").first.inner_text() == "100%"
    assert any(0 < v < 100 for v in seen), f"no progress in between: {seen}"
    assert page.locator("#tasks .task .result").first.inner_text() in (
        "Done.",
        'Result: "report with 10 sections"',
    )
    # The page as the server draws it: {% task_progress %} for the visitor's task.
    page.reload()
    page.wait_for_function(
        "() => document.querySelector('.djtasks-progress-state').textContent === 'SUCCESS'"
    )
    assert page.locator("#tasks .djtasks-progress progress").first.evaluate("el => el.value") == 100


# -- screenshots (opt-in) --------------------------------------------------------------

SCREENSHOTS = os.environ.get("DJTASKS_SCREENSHOTS")


def _history(now: dt.datetime) -> TaskRecord:
    """A day of plausible history so the dashboard has something to show."""
    rng = random.Random(7)
    names = [
        "shop.tasks.send_email",
        "shop.tasks.make_thumbnail",
        "shop.tasks.charge_card",
        "shop.tasks.sync_stock",
        "shop.tasks.build_report",
    ]
    rows = []
    for i in range(3000):
        done = now - dt.timedelta(seconds=rng.random() ** 1.6 * 86_000)
        runtime = rng.lognormvariate(-1.5, 0.9)
        state = states.FAILURE if rng.random() < 0.04 else states.SUCCESS
        created = done - dt.timedelta(seconds=runtime + 0.01)
        rows.append(
            TaskRecord(
                id=uuid7(),
                name=names[min(4, int(rng.random() ** 2 * 5))],
                queue=rng.choice(["default", "default", "hipri", "emails"]),
                payload=serialization.encode([[i], {"size": 128}], "json")[1],
                state=state,
                created_at=created,
                eta=created,
                received_at=created,
                started_at=created,
                done_at=done,
                runtime=runtime,
                worker="w1@web-1",
                exc_type="shop.errors.UpstreamTimeout" if state == states.FAILURE else "",
                exc_message="payment gateway did not answer in 10 s"
                if state == states.FAILURE
                else "",
                result=None if state == states.FAILURE else "true",
                result_content_type="application/json",
            )
        )
    TaskRecord.objects.bulk_create(rows, batch_size=500)
    for i in range(40):
        TaskRecord.objects.create(
            id=uuid7(),
            name=names[i % 3],
            queue=["default", "emails"][i % 2],
            payload=serialization.encode([[i], {}], "json")[1],
            created_at=now,
            eta=now - dt.timedelta(seconds=90 - i) if i % 5 else now + dt.timedelta(hours=1),
        )
    return TaskRecord.objects.create(
        id=uuid7(),
        name="shop.tasks.charge_card",
        queue="hipri",
        priority=10,
        payload=serialization.encode(
            [["order-1042"], {"amount": "49.90", "currency": "EUR"}], "json"
        )[1],
        headers={"trace_id": "4bf92f3577b34da6", RETRY_OF_HEADER: str(rows[0].id)},
        state=states.FAILURE,
        retries=3,
        attempt=4,
        worker="w1@web-1",
        created_at=now - dt.timedelta(seconds=42),
        eta=now - dt.timedelta(seconds=12),
        received_at=now - dt.timedelta(seconds=12),
        started_at=now - dt.timedelta(seconds=12),
        done_at=now - dt.timedelta(seconds=2),
        runtime=10.02,
        exc_type="shop.errors.UpstreamTimeout",
        exc_message="payment gateway did not answer in 10 s",
        traceback='Traceback (most recent call last):\n  File "shop/tasks.py", line 88, in '
        "charge_card\n    reply = gateway.charge(order, amount, timeout=10)\n  File "
        '"shop/gateway.py", line 41, in charge\n    raise UpstreamTimeout(...)\n'
        "shop.errors.UpstreamTimeout: payment gateway did not answer in 10 s\n",
    )


@pytest.mark.skipif(not SCREENSHOTS, reason="set DJTASKS_SCREENSHOTS=<dir> to write them")
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshots(
    page: Any,
    live_server: Any,
    admin_login: Callable[[], None],
    worker: Callable[..., Any],
    theme: str,
) -> None:
    target = (
        ROOT / str(SCREENSHOTS)
        if not Path(str(SCREENSHOTS)).is_absolute()
        else Path(str(SCREENSHOTS))
    )
    target.mkdir(parents=True, exist_ok=True)
    detail = _history(timezone.now())
    worker(concurrency=4, pool="threads", queues=("hipri",), name="w1@web-1")
    admin_login()
    page.emulate_media(color_scheme=theme)
    page.goto(f"{live_server.url}/admin/djtasks/taskrecord/dashboard/")
    page.wait_for_selector('[data-section="throughput"] svg')
    suffix = "" if theme == "light" else "-dark"
    page.screenshot(path=str(target / f"admin-dashboard{suffix}.png"), full_page=True)
    page.goto(f"{live_server.url}/admin/djtasks/taskrecord/{detail.id}/change/")
    page.screenshot(path=str(target / f"admin-task-detail{suffix}.png"), full_page=True)
