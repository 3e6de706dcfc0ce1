from django.apps import AppConfig


class MediaConfig(AppConfig):
    name = "example_project.media"
    label = "media"
    verbose_name = "Example media"
