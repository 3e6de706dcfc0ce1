"""The API's routes, mounted by ``djtasks.urls`` under the same ``include()``.

With ``path("tasks/", include("djtasks.urls"))`` they are ``/tasks/workers/``,
``/tasks/tasks/…``, ``/tasks/queues/…``, ``/tasks/metrics`` and
``/tasks/openapi.json``. Names are in the ``djtasks`` namespace, prefixed
``api-``.
"""

from django.urls import path

from . import views

urlpatterns = [
    path("workers/", views.worker_list, name="api-workers"),
    path("workers/<str:name>/", views.worker_detail, name="api-worker"),
    path("workers/<str:name>/pool/grow/", views.worker_pool_grow, name="api-worker-pool-grow"),
    path(
        "workers/<str:name>/pool/shrink/", views.worker_pool_shrink, name="api-worker-pool-shrink"
    ),
    path("workers/<str:name>/shutdown/", views.worker_shutdown, name="api-worker-shutdown"),
    path("tasks/", views.task_list, name="api-tasks"),
    path("tasks/apply/<str:name>/", views.task_apply, name="api-task-apply"),
    path("tasks/<str:task_id>/", views.task_detail, name="api-task"),
    path("tasks/<str:task_id>/tree/", views.task_tree, name="api-task-tree"),
    path("tasks/<str:task_id>/revoke/", views.task_revoke, name="api-task-revoke"),
    path("tasks/<str:task_id>/retry/", views.task_retry, name="api-task-retry"),
    path("queues/", views.queue_list, name="api-queues"),
    path("queues/<str:name>/pause/", views.queue_pause, name="api-queue-pause"),
    path("queues/<str:name>/resume/", views.queue_resume, name="api-queue-resume"),
    path("metrics", views.metrics, name="api-metrics"),
    path("openapi.json", views.openapi, name="api-openapi"),
]
