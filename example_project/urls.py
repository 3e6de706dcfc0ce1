from django.contrib import admin
from django.urls import include, path

from example_project.media import views

urlpatterns = [
    path("", views.index, name="index"),
    path("thumbnail/", views.start_thumbnail, name="start-thumbnail"),
    path("report/", views.start_report, name="start-report"),
    path("tasks/", include("djtasks.urls")),
    path("admin/", admin.site.urls),
]
