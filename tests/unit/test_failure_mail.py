"""DJTASKS_SEND_FAILURE_EMAILS: the admins hear of a final failure, throttled per task."""

from __future__ import annotations

from django.core import mail
from django.test import override_settings
from django.utils import timezone

from djtasks import states
from djtasks.queue import Outcome
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


@override_settings(
    ADMINS=[("Ops", "ops@example.com")],
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)
def test_failures_are_mailed_once_per_interval_per_task() -> None:
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
    subjects = sorted(m.subject for m in mail.outbox)
    assert len(subjects) == 2  # one per task name; the second charge failure waits
    assert "shop.charge" in subjects[0] and "ValueError" in subjects[0]
    assert "shop.refund" in subjects[1]
    assert "boom 1" in mail.outbox[0].body or "boom 1" in mail.outbox[1].body


@override_settings(
    ADMINS=[("Ops", "ops@example.com")],
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)
def test_the_next_mail_says_how_many_were_left_out() -> None:
    mailer = FailureMailer("w1@host")
    with override_settings(DJTASKS_SEND_FAILURE_EMAILS=True, DJTASKS_FAILURE_EMAIL_INTERVAL=0.01):
        mailer([_failure("shop.charge", 1)])
        import time

        mailer([_failure("shop.charge", 2)])  # within the interval: counted, not sent
        time.sleep(0.02)
        mailer([_failure("shop.charge", 3)])
    assert len(mail.outbox) == 2
    assert "1 more failure(s) of shop.charge" in mail.outbox[1].body


def test_nothing_is_mailed_when_the_setting_is_off() -> None:
    with override_settings(
        ADMINS=[("Ops", "ops@example.com")],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
    ):
        FailureMailer("w1@host")([_failure("shop.charge", 1)])
        assert mail.outbox == []
