"""The live WebSocket over a real connection to uvicorn serving the project's ASGI application,
with the real Redis channel layer: authentication, subscriptions, isolation exactly as the API's,
queue.state on every change. (Not channels' communicator: channels.testing imports daphne.)"""

import json

import pytest
from rest_framework.authtoken.models import Token
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from campaigns.pipeline import phase_items_add
from tests.breakers import breaker_trip
from tests.factories import CampaignFactory
from tracking.live import live_publish


def token_headers(user) -> list:
    token, _ = Token.objects.get_or_create(user=user)
    return [("Authorization", f"Token {token.key}")]


class Socket:
    """A WebSocket client connection to the server."""

    def __init__(self, url: str, headers: list) -> None:
        self.connected, self.code = False, None
        try:
            # Entered as a context manager, as websockets asks; close() leaves it.
            self.connection = connect(url, additional_headers=dict(headers), open_timeout=5).__enter__()
        except InvalidStatus as exc:  # refused before the handshake completed
            self.code = exc.response.status_code
            return
        self.connected = True

    def send(self, message: dict) -> None:
        self.connection.send(json.dumps(message))

    def send_text(self, text: str) -> None:
        self.connection.send(text)

    def receive(self, timeout: float = 3) -> dict:
        return json.loads(self.connection.recv(timeout=timeout))

    def receive_type(self, kind: str, timeout: float = 3) -> dict:
        while True:
            message = self.receive(timeout)
            if message["type"] == kind:
                return message

    def silent(self, timeout: float = 0.5) -> bool:
        return not self.everything(timeout)

    def everything(self, timeout: float = 0.5) -> list[dict]:
        """Whatever arrives until nothing has for `timeout` seconds."""
        found = []
        while True:
            try:
                found.append(json.loads(self.connection.recv(timeout=timeout)))
            except TimeoutError:
                return found

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def sockets(asgi_server):
    opened = []
    url = asgi_server.replace("http://", "ws://") + "/ws/live/"

    def open_for(user=None, headers=None):
        socket = Socket(url, headers if headers is not None else token_headers(user))
        opened.append(socket)
        return socket

    yield open_for
    for socket in opened:
        if socket.connected:
            socket.close()


def test_an_anonymous_client_is_refused(sockets):
    socket = sockets(headers=[])
    assert not socket.connected
    assert socket.code == 403  # closed before accept: uvicorn answers the handshake with 403


def test_a_session_cookie_from_another_site_is_refused(sockets):
    socket = sockets(headers=[("Cookie", "sessionid=abc"), ("Origin", "https://evil.example")])
    assert not socket.connected
    assert socket.code == 403


def test_a_member_gets_the_queue_state_then_her_campaigns_progress_as_it_changes(alice, running_campaign, sockets):
    socket = sockets(alice)
    assert socket.connected
    queue = socket.receive()
    assert queue["type"] == "queue.state" and queue["data"]["state"] == "active"

    socket.send({"action": "subscribe", "campaign": str(running_campaign.pk)})
    assert socket.receive()["type"] == "subscribed"
    snapshot = socket.receive()
    assert snapshot["type"] == "campaign.progress"
    assert snapshot["data"]["campaign"] == str(running_campaign.pk)
    assert snapshot["data"]["counts"]["leads"] == 100 and snapshot["data"]["counts"]["verified"] == 20

    phase_items_add(campaign_id=running_campaign.pk, phase="verification", done=50, passed=40)
    live_publish()
    update = socket.receive_type("campaign.progress")
    assert update["data"]["counts"]["verified"] == 60
    assert update["data"]["phase_progress"] == 75


def test_another_organizations_campaign_cannot_be_subscribed_and_its_news_never_arrives(
    alice, charlie, running_campaign, other_org, sockets
):
    theirs = CampaignFactory(organization=other_org, status="running", phase="verification")
    socket = sockets(charlie)
    socket.receive()  # queue.state
    socket.send({"action": "subscribe", "campaign": str(running_campaign.pk)})
    refusal = socket.receive()
    assert refusal["type"] == "error" and refusal["data"]["detail"] == "No campaign with that id."
    socket.send({"action": "subscribe", "organization": "acme"})
    assert socket.receive()["type"] == "error"
    socket.send({"action": "subscribe", "platform": True})
    assert socket.receive()["data"]["detail"] == "The platform's view is for staff."

    socket.send({"action": "subscribe", "organization": "*"})
    assert socket.receive()["type"] == "subscribed"
    snapshot = socket.receive_type("campaign.progress")
    assert snapshot["data"]["campaign"] == str(theirs.pk)
    assert socket.silent()

    phase_items_add(campaign_id=running_campaign.pk, phase="verification", done=1)  # Acme's, not Globex's
    live_publish()  # also the periodic refresh of every running campaign: Globex's own comes
    about = {message["data"].get("campaign") for message in socket.everything()}
    assert str(running_campaign.pk) not in about


def test_staff_see_every_organizations_campaigns_on_the_platform_view(staff, running_campaign, other_org, sockets):
    CampaignFactory(organization=other_org, status="running", phase="lead_sourcing")
    socket = sockets(staff)
    socket.receive()
    socket.send({"action": "subscribe", "platform": True})
    assert socket.receive()["type"] == "subscribed"
    seen = {socket.receive_type("campaign.progress")["data"]["organization"] for _ in range(2)}
    assert seen == {"acme", "globex"}


def test_a_queue_pause_and_a_breaker_go_out_as_queue_state(alice, sockets):
    socket = sockets(alice)
    socket.receive()
    breaker_trip(service="apollo")
    live_publish()
    state = socket.receive_type("queue.state")
    assert state["data"]["state"] == "paused"
    assert state["data"]["reason"] == "breaker:apollo"
    assert state["data"]["open_breakers"] == ["apollo"]
    assert {b["service"]: b["state"] for b in state["data"]["breakers"]}["apollo"] == "open"


def test_bad_messages_get_an_error_not_a_closed_socket(alice, sockets):
    socket = sockets(alice)
    socket.receive()
    socket.send_text("not json")
    assert socket.receive()["type"] == "error"
    socket.send({"action": "dance"})
    assert socket.receive()["type"] == "error"
    socket.send({"action": "subscribe", "campaign": 42})
    assert socket.receive()["data"]["detail"] == "No campaign with that id."


@pytest.mark.slow
def test_a_socket_left_idle_longer_than_the_layers_blocking_read_still_gets_news(alice, running_campaign, sockets):
    """channels_redis blocks 5 s per read; redis-py's asyncio socket timeout (5 s by default)
    raced it and killed the consumer (seen under make run): settings give the layer 30 s."""
    socket = sockets(alice)
    socket.receive()
    socket.send({"action": "subscribe", "campaign": str(running_campaign.pk)})
    socket.receive_type("campaign.progress")
    assert socket.silent(timeout=7)  # idle past one blocking read
    phase_items_add(campaign_id=running_campaign.pk, phase="verification", done=1)
    live_publish()
    assert socket.receive_type("campaign.progress")["data"]["phase_progress"] == 26
