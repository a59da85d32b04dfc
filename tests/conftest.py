"""Personas: Alice owns the Acme organization, Bob operates it, Victor only views it, Charlie
belongs to another organization and must never see Acme's data; anon has no credentials at all."""

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from campaigns_project.redis import get_redis
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory


@pytest.fixture(autouse=True)
def _clean_app_redis_keys():
    """Every test starts with none of the app's Redis keys (breakers, latch mirror, buckets)."""
    r = get_redis()
    keys = list(r.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000))
    if keys:
        r.delete(*keys)
    yield


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def alice(org):
    return MembershipFactory(user=UserFactory(username="alice"), organization=org, role="owner").user


@pytest.fixture
def bob(org):
    return MembershipFactory(user=UserFactory(username="bob"), organization=org, role="operator").user


@pytest.fixture
def viewer(org):
    return MembershipFactory(user=UserFactory(username="victor"), organization=org, role="viewer").user


@pytest.fixture
def other_org(db):
    return OrganizationFactory(name="Globex", slug="globex")


@pytest.fixture
def charlie(other_org):
    return MembershipFactory(user=UserFactory(username="charlie"), organization=other_org, role="owner").user


@pytest.fixture
def staff(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


def _client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def alice_client(alice):
    return _client_for(alice)


@pytest.fixture
def bob_client(bob):
    return _client_for(bob)


@pytest.fixture
def viewer_client(viewer):
    return _client_for(viewer)


@pytest.fixture
def charlie_client(charlie):
    return _client_for(charlie)


@pytest.fixture
def platform_client(staff):
    """Staff: the platform, who may pause and resume the queue and reset breakers."""
    return _client_for(staff)


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def admin_client_logged_in(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def asgi_server(transactional_db):
    """The project's ASGI application (HTTP and the live WebSocket) served by uvicorn, as `make run`
    and the compose `ws` service serve it, in a thread of this process (so it reads the test
    database). Yields its base URL, http://127.0.0.1:<port>."""
    import socket
    import threading
    import time

    import uvicorn

    from campaigns_project.asgi import application

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
