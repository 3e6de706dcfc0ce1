import json
import os

from django.apps import AppConfig


class DjangoTasksTestConfig(AppConfig):
    """Installed only in the subprocesses of the django.tasks tests."""

    name = "tests.django_tasks_app"
    label = "django_tasks_app"

    def ready(self) -> None:
        path = os.environ.get("DJTASKS_TEST_SIGNAL_LOG")
        if not path:
            return
        from django.tasks.signals import task_enqueued, task_finished, task_started

        def record(signal_name):
            def receiver(sender, task_result, **kwargs):
                with open(path, "a") as f:
                    f.write(
                        json.dumps(
                            {
                                "signal": signal_name,
                                "pid": os.getpid(),
                                "id": task_result.id,
                                "status": str(task_result.status),
                                "sender": sender.__name__,
                                "attempts": task_result.attempts,
                            }
                        )
                        + "\n"
                    )

            return receiver

        # Kept on the instance: signals hold receivers weakly.
        self.receivers = [record(n) for n in ("enqueued", "started", "finished")]
        task_enqueued.connect(self.receivers[0])
        task_started.connect(self.receivers[1])
        task_finished.connect(self.receivers[2])
