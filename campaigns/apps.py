from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "campaigns"

    def ready(self) -> None:
        # Connect the queue cascade receivers and register the pipeline's job handlers.
        # The mailbox secret key's deploy check.
        from . import handlers, pausing, secrets  # noqa: F401
