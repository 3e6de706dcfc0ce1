"""Imported only by the worker's task loading (tests check it was not imported before)."""

from django.tasks import task


@task()
def lazy_double(x):
    return 2 * x
