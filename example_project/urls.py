from django.contrib import admin
from django.urls import path

from example_project.media import views

urlpatterns = [
    path("", views.index, name="index"),
    path("thumbnail/", views.start_thumbnail, name="start-thumbnail"),
    path("report/", views.start_report, name="start-report"),
    path("status/<uuid:task_id>/", views.status, name="status"),
    path("admin/", admin.site.urls),
]
