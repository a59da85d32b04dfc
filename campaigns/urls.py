from rest_framework.routers import DefaultRouter

from . import api_phases, api_pipeline
from .api import CampaignViewSet
from .api_mailboxes import MailboxViewSet

router = DefaultRouter(trailing_slash="/?")
router.include_root_view = False  # /api/v1/ lists every app's resources (campaigns_project.api_root)
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("mailboxes", MailboxViewSet, basename="mailbox")

urlpatterns = api_pipeline.urlpatterns + api_phases.urlpatterns + router.urls
