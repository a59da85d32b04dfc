"""ASGI: HTTP (the same Django as wsgi.py) and the live WebSocket (/ws/live/, tracking/consumers.py).

docker-compose.yml serves HTTP with gunicorn (WSGI: the tracking URLs' throughput) and this module
with uvicorn in the `ws` service; `make run` serves both from this module on one port.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from tracking.consumers import LiveAuthMiddleware  # noqa: E402
from tracking.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": LiveAuthMiddleware(URLRouter(websocket_urlpatterns))}
)
