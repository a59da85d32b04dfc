"""The back-office's admin site: Django's AdminSite with two documented hooks, so an app adds to
the admin without monkeypatching it or reaching into another app's module.

- `register_pages(name, urls)`: `urls()` returns extra URL patterns (an app's own admin pages:
  queue control, the live dashboard), put in front of the site's own; one entry per name.
- `register_campaign_panel(name, panel)`: `panel(campaign)` returns safe HTML shown read-only on
  the campaign's admin page, in registration order (campaigns' apps register theirs in
  AppConfig.ready(), in INSTALLED_APPS order).

Installed as the default site by `campaigns_project.apps.AdminConfig` (INSTALLED_APPS), so
`django.contrib.admin.site` is this one."""

from collections.abc import Callable
from typing import cast

from django.contrib import admin


class BackOfficeAdminSite(admin.AdminSite):
    site_header = "Campaign back-office"
    site_title = "Campaign back-office"
    # There is no public site: "View site" leads to the browsable API.
    site_url = "/api/v1/"
    # The list pages need the width for their columns (jobs, recipients, events, leads in a 1400 px
    # window); the index and the breadcrumbs lead everywhere the sidebar did.
    enable_nav_sidebar = False

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._pages: dict[str, Callable[[], list]] = {}
        self._campaign_panels: dict[str, Callable] = {}

    def register_pages(self, name: str, urls: Callable[[], list]) -> None:
        self._pages[name] = urls

    def register_campaign_panel(self, name: str, panel: Callable) -> None:
        self._campaign_panels[name] = panel

    def campaign_panels(self) -> list[Callable]:
        return list(self._campaign_panels.values())

    def get_urls(self) -> list:
        return [pattern for urls in self._pages.values() for pattern in urls()] + super().get_urls()


def back_office_site() -> BackOfficeAdminSite:
    """`django.contrib.admin.site`, typed as the BackOfficeAdminSite it is (AdminConfig.default_site)."""
    return cast(BackOfficeAdminSite, admin.site)
