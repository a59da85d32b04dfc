from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig
from django.db.backends.signals import connection_created


class ProjectConfig(AppConfig):
    """The project package as an app: it owns no models, only process-wide hooks."""

    name = "campaigns_project"
    verbose_name = "Campaign back-office"

    def ready(self) -> None:
        from .datetimes import install_lenient_loader

        connection_created.connect(install_lenient_loader, dispatch_uid="campaigns_project.lenient_timestamps")


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin with the back-office's site (campaigns_project.admin_site)."""

    default_site = "campaigns_project.admin_site.BackOfficeAdminSite"
