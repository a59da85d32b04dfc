from rest_framework.routers import DefaultRouter

from .api import CampaignViewSet

router = DefaultRouter(trailing_slash="/?")
router.register("campaigns", CampaignViewSet, basename="campaign")

urlpatterns = router.urls
