from rest_framework.routers import DefaultRouter

from . import api_pipeline
from .api import CampaignViewSet

router = DefaultRouter(trailing_slash="/?")
router.register("campaigns", CampaignViewSet, basename="campaign")

urlpatterns = api_pipeline.urlpatterns + router.urls
