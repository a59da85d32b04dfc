"""Two installations on one Redis database keep their work apart: each has its own Celery queue
and broadcast channels, and its own key prefix for breakers, the latch mirror and the cache.

Each installation's settings are the real settings module, loaded afresh with its own
INSTALLATION_ID, as two checkouts running `make run` would load them."""

import contextlib
import importlib.util
import itertools
import time
from pathlib import Path

import pytest
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
_loaded = itertools.count()


def settings_of(installation_id: str, monkeypatch):
    monkeypatch.setenv("INSTALLATION_ID", installation_id)
    monkeypatch.delenv("REDIS_KEY_PREFIX", raising=False)
    name = f"campaigns_project._settings_copy_{next(_loaded)}"  # a package member, so `from .env` works
    spec = importlib.util.spec_from_file_location(name, ROOT / "campaigns_project" / "settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def celery_app_of(settings_module) -> Celery:
    app = Celery(f"installation-{settings_module.INSTALLATION_ID}")
    app.config_from_object(settings_module, namespace="CELERY")
    return app


def received_by_a_worker_of(app: Celery, seconds: float = 1.5) -> list[str]:
    """Task ids delivered from the queues a `celery worker` of this app consumes (no -Q given)."""
    ids: list[str] = []

    def on_message(body, message):
        ids.append(message.headers["id"])
        message.ack()

    queues = list(app.amqp.queues.values())
    with app.connection_for_read() as connection, connection.Consumer(queues, callbacks=[on_message], accept=["json"]):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=0.2)
    return ids


@pytest.fixture
def two_installations(monkeypatch):
    suffix = str(time.monotonic_ns())[-8:]
    first = settings_of(f"alpha-{suffix}", monkeypatch)
    second = settings_of(f"beta-{suffix}", monkeypatch)
    apps = celery_app_of(first), celery_app_of(second)
    yield (first, second), apps
    for app in apps:  # leave no queue behind in the shared Redis
        with app.connection_for_write() as connection:
            for queue in app.amqp.queues.values():
                queue.bind(connection.default_channel).delete()


def test_a_worker_of_one_installation_never_receives_the_others_messages(two_installations):
    (first, second), (first_app, second_app) = two_installations
    assert first.REDIS_URL == second.REDIS_URL  # one Redis database for both

    sent = first_app.send_task("campaigns.tasks.work", args=["00000000-0000-0000-0000-000000000000", "pipeline"])

    assert received_by_a_worker_of(second_app) == []
    assert received_by_a_worker_of(first_app) == [sent.id]


def test_each_installation_has_its_own_queue_keys_cache_and_broadcast_channels(two_installations):
    (first, second), (first_app, second_app) = two_installations
    assert f"{first.INSTALLATION_ID}.default" == first.CELERY_TASK_DEFAULT_QUEUE
    assert f"{first.INSTALLATION_ID}:" == first.REDIS_KEY_PREFIX
    assert first.CACHES["default"]["KEY_PREFIX"] != second.CACHES["default"]["KEY_PREFIX"]
    assert first.REDIS_KEY_PREFIX != second.REDIS_KEY_PREFIX
    assert first_app.control.mailbox.namespace != second_app.control.mailbox.namespace


def test_the_default_installation_id_is_safe_when_unset(monkeypatch):
    monkeypatch.delenv("INSTALLATION_ID", raising=False)
    monkeypatch.delenv("REDIS_KEY_PREFIX", raising=False)
    name = f"campaigns_project._settings_copy_{next(_loaded)}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "campaigns_project" / "settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (module.INSTALLATION_ID, module.REDIS_KEY_PREFIX, module.CELERY_TASK_DEFAULT_QUEUE) == (
        "cbo",
        "cbo:",
        "cbo.default",
    )


def test_a_malformed_installation_id_stops_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="INSTALLATION_ID must be"):
        settings_of("two words", monkeypatch)
