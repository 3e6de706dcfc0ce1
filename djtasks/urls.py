"""URLs for the user's own pages: ``path("tasks/", include("djtasks.urls"))``.

``status/<token>/`` (one task) and ``status/?id=<token>&id=…`` (several); see
:mod:`djtasks.views`. ``AsyncResult.status_url()`` reverses ``djtasks:status``.
"""

from django.urls import include, path

from . import views

app_name = "djtasks"

urlpatterns = [
    path("status/", views.bulk_status, name="bulk-status"),
    path("status/<str:token>/", views.task_status, name="status"),
    # The operators' JSON API and metrics (djtasks.api.urls).
    path("", include("djtasks.api.urls")),
]
