from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """Tasks and models used only by the test suite."""

    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"
