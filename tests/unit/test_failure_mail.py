"""DJTASKS_SEND_FAILURE_EMAILS: the admins hear of a final failure, throttled per task.

``mail_admins`` is captured here (Django 5.2 and 6.1 configure test mail
differently); what is under test is which mails the worker decides to send.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from djtasks import states
from djtasks.queue import Outcome
from djtasks.worker import failure_mail
from djtasks.worker.failure_mail import FailureMailer


def _failure(name: str, n: int) -> Outcome:
    return Outcome(
        f"00000000-0000-7000-8000-{n:012d}",
        1,
        states.FAILURE,
        timezone.now(),
        exc_type="builtins.ValueError",
        exc_message=f"boom {n}",
        traceback="Traceback ...",
        task_name=name,
    )


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    sent: list[tuple[str, str]] = []

    def mail_admins(subject: str, message: str, **kwargs: Any) -> None:
        sent.append((subject, message))

    monkeypatch.setattr(failure_mail, "mail_admins", mail_admins)
    return sent


def test_failures_are_mailed_once_per_interval_per_task(outbox: list[Any]) -> None:
    mailer = FailureMailer("w1@host")
    with override_settings(DJTASKS_SEND_FAILURE_EMAILS=True, DJTASKS_FAILURE_EMAIL_INTERVAL=300):
        mailer([_failure("shop.charge", 1), _failure("shop.charge", 2), _failure("shop.refund", 3)])
        mailer(
            [
                Outcome(
                    "00000000-0000-7000-8000-000000000009",
                    1,
                    states.SUCCESS,
                    timezone.now(),
                    task_name="shop.charge",
                )
            ]
        )
    subjects = sorted(subject for subject, _ in outbox)
    assert len(subjects) == 2  # one per task name; the second charge failure waits
    assert "shop.charge" in subjects[0] and "ValueError" in subjects[0]
    assert "shop.refund" in subjects[1]
    assert any("boom 1" in body and "w1@host" in body for _, body in outbox)


def test_the_next_mail_says_how_many_were_left_out(outbox: list[Any]) -> None:
    mailer = FailureMailer("w1@host")
    with override_settings(DJTASKS_SEND_FAILURE_EMAILS=True, DJTASKS_FAILURE_EMAIL_INTERVAL=0.05):
        mailer([_failure("shop.charge", 1)])
        mailer([_failure("shop.charge", 2)])  # within the interval: counted, not sent
        time.sleep(0.1)
        mailer([_failure("shop.charge", 3)])
    assert len(outbox) == 2
    assert "1 more failure(s) of shop.charge" in outbox[1][1]


def test_nothing_is_mailed_when_the_setting_is_off(outbox: list[Any]) -> None:
    FailureMailer("w1@host")([_failure("shop.charge", 1)])
    assert outbox == []
