"""One style for the API: every /api/v1/ endpoint is a ViewSet on a router, each route is there
once, no two routes answer the same URL (so no order of inclusion decides which one wins), a
campaign's sub-resources sit under campaigns/{campaign_pk}/, and one permission class decides who
may operate an organization."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework import viewsets

from campaigns.api_base import CampaignResourceViewSet, CanOperateOrganization
from campaigns.urls import ROUTES as CAMPAIGN_ROUTES
from tests.factories import CampaignFactory
from tracking.api_urls import ROUTES as TRACKING_ROUTES

# A sample value for each kind of path variable, to build one concrete URL per route.
SAMPLES = {
    "pk": "7",
    "campaign_pk": "7",
    "slug": "acme",
    "recipient_id": "8",
    "delivery_id": "9",
    "service": "apollo",
    "format": "json",
}


def api_patterns(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from api_patterns(entry, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/v1/") and route != "api/v1/":
            yield route, entry


def sample_url(route: str) -> str:
    regex = route.replace("^", "").replace("$", "")
    regex = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: SAMPLES[m.group(1)], regex)
    return "/" + regex.replace("(?:/)?", "").replace("/?", "").replace("\\.", ".")


def test_every_api_endpoint_is_a_viewset():
    for route, pattern in api_patterns():
        cls = getattr(pattern.callback, "cls", None)
        assert cls is not None and issubclass(cls, viewsets.ViewSetMixin), f"{route} is not a ViewSet's"


def test_no_route_is_doubled_and_no_two_routes_answer_the_same_url():
    patterns = list(api_patterns())
    routes = [route for route, _ in patterns]
    assert len(routes) == len(set(routes))
    for route, _ in patterns:
        url = sample_url(route).lstrip("/")
        matching = [other for other, entry in patterns if entry.pattern.regex.search(url[len("api/v1/") :])]
        assert len(matching) <= 1 or all(other == route for other in matching), (url, matching)


def test_the_slash_is_optional_on_every_route():
    client_paths = [sample_url(route) for route, _ in api_patterns() if "format" not in route]
    resolver = get_resolver()
    for path in client_paths:
        for spelling in (path.rstrip("/"), path.rstrip("/") + "/"):
            resolver.resolve(spelling)  # raises Resolver404


def test_campaign_sub_resources_are_nested_viewsets_with_one_permission_class():
    for prefix, viewset, _ in (*CAMPAIGN_ROUTES, *TRACKING_ROUTES):
        if prefix.startswith("campaigns/(?P<campaign_pk>"):
            assert issubclass(viewset, CampaignResourceViewSet), prefix
        if issubclass(viewset, CampaignResourceViewSet) or prefix in ("campaigns", "webhook-endpoints"):
            assert CanOperateOrganization in viewset.permission_classes, prefix


def test_options_answers_on_every_route(alice_client, campaign_for_routes):
    """OPTIONS (the browsable API and schemathesis ask it) describes a route, never a 500, also
    for a ViewSet whose bodies are per action."""
    for route, _ in api_patterns():
        if "format" in route:
            continue
        url = sample_url(route).replace("/7/", f"/{campaign_for_routes.pk}/", 1)
        response = alice_client.options(url)
        assert response.status_code < 500, (url, response.status_code)


@pytest.fixture
def campaign_for_routes(org):
    return CampaignFactory(organization=org)
