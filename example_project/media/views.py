"""The example page: buttons that start tasks, and the JSON status it polls."""

import random

from django.http import HttpRequest, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from djtasks import AsyncResult

from .tasks import make_thumbnail, slow_report


def index(request: HttpRequest):
    return render(request, "index.html")


def _started(result: AsyncResult) -> JsonResponse:
    return JsonResponse({"id": result.id,
                         "status_url": reverse("status", args=[result.id])}, status=202)


@require_POST
def start_thumbnail(request: HttpRequest) -> JsonResponse:
    return _started(make_thumbnail.delay(random.randint(1, 10_000), 128))  # noqa: S311


@require_POST
def start_report(request: HttpRequest) -> JsonResponse:
    return _started(slow_report.delay(steps=10, delay=0.3))


@require_GET
def status(request: HttpRequest, task_id) -> JsonResponse:
    result = AsyncResult(task_id)
    state = result.state
    body = {"id": result.id, "state": state, "ready": state in ("SUCCESS", "FAILURE",
                                                                "REVOKED")}
    if state == "PROGRESS":
        body["progress"] = result.info
    elif state == "SUCCESS":
        body["result"] = result.result
    elif state in ("FAILURE", "REVOKED"):
        body["error"] = str(result.result)
    return JsonResponse(body)
