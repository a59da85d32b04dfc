"""Personas: Alice owns the Acme organization, Bob operates it, Victor only views it, Charlie
belongs to another organization and must never see Acme's data; anon has no credentials at all."""

import pytest
from django.conf import settings
from django.core import serializers
from django.db import transaction
from rest_framework.test import APIClient

from campaigns_project.redis import get_redis
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from tracking import outbound

# Rows the data migrations create (the sandbox toggles, the latch row, the beat schedule). A
# transactional test ends with a flush that empties every table; pytest-django runs those tests last
# so the others still see the rows, but pytest-xdist hands files to workers in any order. So the rows
# are snapshotted once per test database and put back after each transactional test.
MIGRATION_DATA_MODELS = (
    "integrations.SandboxSetting",
    "queue_control.QueueState",
    "django_celery_beat.IntervalSchedule",
    "django_celery_beat.CrontabSchedule",
    "django_celery_beat.PeriodicTask",
    "django_celery_beat.PeriodicTasks",
)
_migration_data: dict = {}


@pytest.fixture(autouse=True)
def _snapshot_migration_data(request):
    """Taken before the first transactional test, while the rows are as the migrations made them."""
    if "json" not in _migration_data and _is_transactional(request.node):
        from django.apps import apps

        request.getfixturevalue("django_db_setup")
        blocker = request.getfixturevalue("django_db_blocker")
        with blocker.unblock():
            _migration_data["json"] = serializers.serialize(
                "json", [row for label in MIGRATION_DATA_MODELS for row in apps.get_model(label).objects.all()]
            )
        _migration_data["blocker"] = blocker


def _is_transactional(item) -> bool:
    marker = item.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return True
    return bool({"transactional_db", "live_server"} & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    if _migration_data and _is_transactional(item):
        from django.apps import apps
        from django.core.management.color import no_style
        from django.db import connection

        with _migration_data["blocker"].unblock(), transaction.atomic():
            for row in serializers.deserialize("json", _migration_data["json"]):
                row.save()
            # The flush restarted the sequences: move them past the ids just put back.
            models = [apps.get_model(label) for label in MIGRATION_DATA_MODELS]
            with connection.cursor() as cursor:
                for statement in connection.ops.sequence_reset_sql(no_style(), models):
                    cursor.execute(statement)
    return result


@pytest.fixture(autouse=True)
def _clean_app_redis_keys():
    """Every test starts with none of the app's Redis keys (breakers, latch mirror, buckets), and
    without the outgoing webhooks' subscriptions cache, the process's copy of rows and a Redis
    version that an earlier test's rollback and this cleanup both took away."""
    r = get_redis()
    keys = list(r.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000))
    if keys:
        r.delete(*keys)
    outbound._subscriptions_cache.update(checked=0.0, version=None, map=None)
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
