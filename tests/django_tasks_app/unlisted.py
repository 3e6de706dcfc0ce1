"""Not in DJTASKS_IMPORTS in the in-process tests: loading must never import it."""

from django.tasks import task

IMPORTED = True


@task()
def unlisted_task():
    return "ran"
