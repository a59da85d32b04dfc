"""Throttling cannot be sidestepped (issue 11, point 5; point 6's test sends)."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tests.factories import CampaignFactory

# Throttle histories live in the cache, under REDIS_KEY_PREFIX: tests/conftest.py empties them.
pytestmark = pytest.mark.django_db

URL = "/api/v1/campaigns/"


@pytest.fixture
def rates(settings):
    def set_rates(**scopes: str) -> None:
        rest = dict(settings.REST_FRAMEWORK)
        rest["DEFAULT_THROTTLE_RATES"] = {**rest["DEFAULT_THROTTLE_RATES"], **scopes}
        settings.REST_FRAMEWORK = rest

    return set_rates


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response["Content-Type"] == "application/json" and response.json()["detail"]


def test_rotating_x_forwarded_for_does_not_lift_the_anonymous_limit(rates):
    rates(anon="3/min")
    client = APIClient()
    answers = [client.get("/api/schema/", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(5)]
    assert answers[:3] == [200, 200, 200] and answers[3:] == [429, 429]


def test_behind_one_trusted_proxy_the_client_is_the_address_it_appended(rates, settings):
    rates(anon="2/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = APIClient()
    # The client forges the left part; the proxy appends the real address on the right.
    for forged in ("1.1.1.1", "2.2.2.2"):
        assert client.get("/api/schema/", HTTP_X_FORWARDED_FOR=f"{forged}, 198.51.100.7").status_code == 200
    assert_throttled(client.get("/api/schema/", HTTP_X_FORWARDED_FOR="3.3.3.3, 198.51.100.7"))
    # Another real client behind the same proxy has its own allowance.
    assert client.get("/api/schema/", HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 200


def test_a_flood_of_bad_tokens_is_throttled_and_then_even_a_good_token_waits(rates, alice):
    rates(auth_failure="5/min")
    from rest_framework.authtoken.models import Token

    good = Token.objects.create(user=alice).key
    client = APIClient()
    answers = [client.get(URL, HTTP_AUTHORIZATION=f"Token bad{i}").status_code for i in range(5)]
    assert answers == [401] * 5
    assert_throttled(client.get(URL, HTTP_AUTHORIZATION="Token bad-again"))
    # Locked out: a right guess cannot be told from a wrong one until the window passes.
    assert_throttled(client.get(URL, HTTP_AUTHORIZATION=f"Token {good}"))


def test_requests_without_credentials_count_as_failed_authentication(rates):
    rates(auth_failure="3/min")
    client = APIClient()
    assert [client.get(URL).status_code for _ in range(3)] == [401, 401, 401]
    assert_throttled(client.get(URL))


def test_every_api_429_carries_retry_after_and_json(rates, alice_client):
    rates(user="2/min")
    alice_client.get(URL)
    alice_client.get(URL)
    response = alice_client.get(URL)
    assert_throttled(response)
    assert response.json()["retry_after"] >= 1


def test_test_sends_are_rate_limited_per_user(rates, alice_client, bob_client, org, mailoutbox):
    rates(test_send="2/min")
    campaign = CampaignFactory(organization=org)
    url = f"{URL}{campaign.pk}/test/"
    for _ in range(2):
        assert alice_client.post(url, {"email": "me@example.org"}, format="json").status_code == 200
    assert_throttled(alice_client.post(url, {"email": "me@example.org"}, format="json"))
    assert bob_client.post(url, {"email": "bob@example.org"}, format="json").status_code == 200  # his own allowance
    assert len(mailoutbox) == 3


# --- the admin login locks out repeated failures (django-axes) ---------------------------------------


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "right-password")


def login(client, password: str, **extra):
    return client.post("/admin/login/?next=/admin/", {"username": "root", "password": password}, **extra)


def test_the_admin_login_locks_out_after_repeated_failures(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        assert login(client, "wrong").status_code == 200  # the form again, with an error
    locked = login(client, "wrong")
    assert locked.status_code == 429 and int(locked["Retry-After"]) == 15 * 60
    assert locked.json()["detail"].startswith("Too many failed login attempts")
    # The right password does not get in while locked out.
    assert login(client, "right-password").status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_browser_sees_the_lockout_as_a_page_with_retry_after(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 1
    response = login(client, "wrong", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert response.status_code == 429 and "Retry-After" in response
    assert b"Too many failed login attempts" in response.content


def test_the_lockout_is_per_address_and_username(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 2
    login(client, "wrong", REMOTE_ADDR="192.0.2.1")
    assert login(client, "wrong", REMOTE_ADDR="192.0.2.1").status_code == 429
    response = login(client, "right-password", REMOTE_ADDR="192.0.2.2")  # the real admin, elsewhere
    assert response.status_code == 302
