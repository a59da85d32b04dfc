"""The Queue control page in the admin: the same facts and buttons as the API, for staff only."""

import re

import pytest
from django.contrib.messages import get_messages

from queue_control.models import QueueEvent, QueueState
from tests.breakers import breaker_trip
from tests.factories import CampaignFactory

PAGE = "/admin/queue-control/"

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_admin_index_links_to_the_queue_control_page(admin_client_logged_in):
    response = admin_client_logged_in.get("/admin/")

    assert response.status_code == 200
    assert f'href="{PAGE}"' in response.content.decode()


def test_the_page_shows_an_active_queue_with_closed_breakers(admin_client_logged_in):
    response = admin_client_logged_in.get(PAGE)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-state="active"' in html
    assert html.count('data-state="closed"') == 6
    assert 'id="queue-pause"' in html
    assert "resume-blocked" not in html


def test_an_open_breaker_is_named_and_resume_is_disabled(admin_client_logged_in):
    breaker_trip(service="apollo", error="<script>alert('x')</script> 502")

    html = admin_client_logged_in.get(PAGE).content.decode()

    assert 'id="breaker-apollo" data-state="open"' in html
    assert "Resume is disabled while these circuit breakers are not closed" in html
    assert "<strong>apollo</strong>" in html
    assert re.search(r'id="queue-resume"\s+disabled', html)
    assert "breaker:apollo" in html
    assert "<script>alert" not in html  # the provider's error text is escaped
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; 502" in html


def test_resume_is_refused_with_a_message_while_a_breaker_is_open(admin_client_logged_in):
    breaker_trip(service="openai")

    response = admin_client_logged_in.post(f"{PAGE}resume/")

    assert response.status_code == 302
    assert messages_of(response) == ["Cannot resume: circuit breaker openai is open"]
    assert QueueState.get().state == "paused"


def test_reset_then_resume_from_the_page(admin_client_logged_in, django_capture_on_commit_callbacks, staff):
    campaign = CampaignFactory(status="running")
    breaker_trip(service="smtp")

    html = admin_client_logged_in.post(f"{PAGE}breakers/smtp/reset/", follow=True).content.decode()
    assert "Circuit breaker smtp reset to closed. The queue stays paused until you resume it." in html
    assert QueueState.get().state == "paused"
    assert not re.search(r'id="queue-resume"\s+disabled', html)

    with django_capture_on_commit_callbacks(execute=True):
        html = admin_client_logged_in.post(f"{PAGE}resume/", follow=True).content.decode()
    assert "Queue resumed: campaigns paused by the queue are running again." in html
    latch = QueueState.get()
    assert (latch.state, latch.changed_by) == ("active", staff)
    campaign.refresh_from_db()
    assert campaign.status == "running"
    assert list(QueueEvent.objects.order_by("id").values_list("kind", "actor_label")) == [
        ("breaker.opened", "system"),
        ("queue.paused", "system"),
        ("breaker.reset", "admin"),
        ("queue.resumed", "admin"),
    ]


def test_pause_asks_for_confirmation_naming_what_it_stops(admin_client_logged_in):
    CampaignFactory(status="running")
    response = admin_client_logged_in.post(f"{PAGE}pause/", {"reason": "provider maintenance"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "Pause the queue?" in html and "1 running campaigns" in html
    assert 'value="provider maintenance"' in html  # the reason is carried to the confirmation
    assert QueueState.get().state == "active"


def test_pause_from_the_page_records_the_reason(admin_client_logged_in):
    admin_client_logged_in.post(f"{PAGE}pause/", {"reason": "provider maintenance", "confirmed": "yes"})

    latch = QueueState.get()
    assert (latch.state, latch.reason, latch.changed_by_label) == ("paused", "provider maintenance", "admin")
    assert "provider maintenance" in admin_client_logged_in.get(PAGE).content.decode()


def test_an_operator_pause_cannot_pose_as_a_breaker(admin_client_logged_in):
    html = admin_client_logged_in.post(f"{PAGE}pause/", {"reason": "breaker:apollo"}, follow=True).content.decode()

    assert "reserved for circuit breakers" in html
    assert QueueState.get().state == "active"


def test_buttons_only_accept_post(admin_client_logged_in):
    assert admin_client_logged_in.get(f"{PAGE}pause/").status_code == 405
    assert QueueState.get().state == "active"


def test_an_unknown_breaker_is_404(admin_client_logged_in):
    assert admin_client_logged_in.post(f"{PAGE}breakers/myspace/reset/").status_code == 404


def test_non_staff_are_sent_to_the_login(client, alice):
    client.force_login(alice)

    response = client.post(f"{PAGE}pause/", {"confirmed": "yes"})

    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert QueueState.get().state == "active"


def test_the_history_is_read_only_in_the_admin(admin_client_logged_in):
    breaker_trip(service="apollo")
    event = QueueEvent.objects.get(kind="breaker.opened")

    assert admin_client_logged_in.get("/admin/queue_control/queueevent/").status_code == 200
    assert admin_client_logged_in.get("/admin/queue_control/queueevent/add/").status_code == 403
    assert admin_client_logged_in.post(f"/admin/queue_control/queueevent/{event.pk}/delete/").status_code == 403
