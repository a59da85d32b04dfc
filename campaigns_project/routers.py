"""The one router class of the API: every endpoint is a ViewSet registered on one of these.

A trailing slash is optional on every route. The schema spells a path with the slash
(`Router()`), or without it (`Router(schema_slash=False)`, the queue-management paths the design
names that way); both spellings answer."""

from rest_framework.routers import DefaultRouter, Route

# A resource there is one of per parent (a campaign's sequence settings): retrieve, update and
# partial_update on the prefix itself, with no id, so the schema says an object, not a list.
SINGLETON_ROUTE = Route(
    url=r"^{prefix}{trailing_slash}$",
    mapping={"get": "retrieve", "put": "update", "patch": "partial_update"},
    name="{basename}",
    detail=True,
    initkwargs={},
)


class Router(DefaultRouter):
    """A ViewSet with `singleton = True` gets only SINGLETON_ROUTE."""

    include_root_view = False  # /api/v1/ lists every app's resources (campaigns_project.api_root)

    def get_routes(self, viewset):
        if getattr(viewset, "singleton", False):
            return [SINGLETON_ROUTE]
        return super().get_routes(viewset)

    def __init__(self, *, schema_slash: bool = True):
        super().__init__()
        # "/?" reads as "/" in the schema; "(?:/)?" as nothing. Both make the slash optional.
        self.trailing_slash = "/?" if schema_slash else "(?:/)?"
