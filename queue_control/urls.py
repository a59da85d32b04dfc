"""Queue management routes, included at /api/v1/queue-management/. The design names these paths
without a trailing slash, and the schema spells them so; the slashed spelling answers too (one
route each, the slash optional: campaigns_project.routers)."""

from campaigns_project.routers import Router

from . import api

router = Router(schema_slash=False)
router.register("circuit-breakers", api.BreakerViewSet, basename="circuit-breaker")
router.register("", api.QueueViewSet, basename="queue")

urlpatterns = router.urls
