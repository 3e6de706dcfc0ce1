from django.http import JsonResponse
from django.urls import path

from . import tasks


def enqueue_view(request):
    result = tasks.add.enqueue(int(request.GET["a"]), int(request.GET["b"]))
    return JsonResponse({"id": result.id, "status": result.status})


urlpatterns = [path("enqueue/", enqueue_view)]
