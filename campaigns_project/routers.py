"""The one router class of the API: every endpoint is a ViewSet registered on one of these.

A trailing slash is optional on every route. The schema spells a path with the slash
(`Router()`), or without it (`Router(schema_slash=False)`, the queue-management paths the design
names that way); both spellings answer."""

from rest_framework.routers import DefaultRouter


class Router(DefaultRouter):
    include_root_view = False  # /api/v1/ lists every app's resources (campaigns_project.api_root)

    def __init__(self, *, schema_slash: bool = True):
        super().__init__()
        # "/?" reads as "/" in the schema; "(?:/)?" as nothing. Both make the slash optional.
        self.trailing_slash = "/?" if schema_slash else "(?:/)?"
