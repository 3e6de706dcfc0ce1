"""The example page: buttons that start tasks; the page follows them through djtasks' status views."""

import random

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from djtasks import AsyncResult

from .tasks import make_thumbnail, slow_report

#: How many of the visitor's tasks the page keeps showing.
RECENT = 5


def index(request: HttpRequest) -> HttpResponse:
    """The page, with a live progress bar for each task this visitor started recently."""
    return render(request, "index.html", {"recent": request.session.get("tasks", [])})


def _started(request: HttpRequest, result: AsyncResult, label: str) -> HttpResponse:
    recent = [{"id": result.id, "label": label}, *request.session.get("tasks", [])]
    request.session["tasks"] = recent[:RECENT]
    if "application/json" in request.headers.get("Accept", ""):
        # The page's script: it draws the bar itself with djtasks.progressBar().
        return JsonResponse(
            {"id": result.id, "label": label, "status_url": result.status_url()}, status=202
        )
    return redirect("index")  # without script: the page draws the bar with {% task_progress %}


@require_POST
def start_thumbnail(request: HttpRequest) -> HttpResponse:
    image_id = random.randint(1, 10_000)  # noqa: S311 - a demo
    return _started(request, make_thumbnail.delay(image_id, 128), f"Thumbnail of image {image_id}")


@require_POST
def start_report(request: HttpRequest) -> HttpResponse:
    return _started(request, slow_report.delay(steps=10, delay=0.3), "Slow report")
