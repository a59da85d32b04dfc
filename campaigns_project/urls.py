from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .api_root import ApiRootView
from .health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", ApiRootView.as_view(), name="api-root"),
    path("api/v1/queue-management/", include("queue_control.urls")),
    path("api/v1/", include("tracking.api_urls")),
    path("api/v1/", include("campaigns.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api-auth/", include("rest_framework.urls")),
    path("t/", include("tracking.urls")),
    path("healthz", healthz, name="healthz"),
]
