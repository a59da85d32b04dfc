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
