from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    name = "benchmarks"
    verbose_name = "djtasks benchmarks"
    default_auto_field = "django.db.models.BigAutoField"
