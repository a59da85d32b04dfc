"""The API's one router, at /api/v1/: every app's ViewSets (campaigns/urls.py, tracking/api_urls.py),
each route once, its trailing slash optional (campaigns_project.routers). Queue management has
its own router under /api/v1/queue-management/ (queue_control/urls.py), for its slashless schema."""

from campaigns.urls import ROUTES as CAMPAIGN_ROUTES
from tracking.api_urls import ROUTES as TRACKING_ROUTES

from .routers import Router

router = Router()
for prefix, viewset, basename in (*CAMPAIGN_ROUTES, *TRACKING_ROUTES):
    router.register(prefix, viewset, basename=basename)

urlpatterns = router.urls
