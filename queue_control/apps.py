from django.apps import AppConfig


class QueueControlConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "queue_control"
