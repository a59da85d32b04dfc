import threading
from collections.abc import Callable, Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

API_KEY = "test-key"


@pytest.fixture(autouse=True)
def _fast_providers(settings):
    """Tiny retry delays and no sandbox latency, so the whole suite runs in seconds."""
    settings.PROVIDER_MAX_RETRIES = 2
    settings.PROVIDER_RETRY_BACKOFF_SECONDS = 0.01
    settings.PROVIDER_RETRY_AFTER_MAX_SECONDS = 0.05
    settings.SANDBOX_LATENCY_MS = 0
    settings.SANDBOX_FAIL = []


@pytest.fixture
def client_for(httpserver: HTTPServer) -> Callable:
    """A real client class pointed at the local fake server."""

    def make(cls, timeout: float = 2.0, api_key: str = API_KEY, **kwargs):
        return cls(api_key=api_key, base_url=httpserver.url_for("/"), timeout=timeout, **kwargs)

    return make


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The delays the client chose between retries, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr("integrations.http.sleep", recorded.append)
    return recorded


@pytest.fixture
def late_answer() -> Iterator[Callable[[Request], Response]]:
    """A handler that answers only after the test is over, long after a tiny client timeout."""
    released = threading.Event()

    def handler(request: Request) -> Response:
        released.wait(5)
        return Response("{}", content_type="application/json")

    yield handler
    released.set()
