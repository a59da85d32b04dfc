"""One campaign end to end on each broker the product supports: Redis (the default) and RabbitMQ
(127.0.0.1:5672 on this machine and CI's). Real workers, beat and sweeper, as in the fault tests."""

import pytest
from kombu import Connection

from .conftest import assert_done_right

pytestmark = [pytest.mark.slow, pytest.mark.faults]
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def test_a_campaign_runs_end_to_end_with_redis_as_the_broker(system, campaigns):
    assert "CELERY_BROKER_URL" not in system.env  # the broker is REDIS_URL, the private redis-server
    assert_done_right(system, campaigns)


@pytest.fixture
def rabbitmq(system):
    """The system's workers and beat on RabbitMQ instead, its queues and exchanges removed after."""
    system.stop_workers()
    system.stop_beat()
    system.workers = []
    system.env["CELERY_BROKER_URL"] = RABBITMQ
    system.start_workers(2)
    system.start_beat()
    yield
    system.stop_workers()
    system.stop_beat()
    system.workers = []
    del system.env["CELERY_BROKER_URL"]
    installation = system.env["INSTALLATION_ID"]
    with Connection(RABBITMQ) as connection:  # this run's own names only: others share the server
        channel = connection.channel()
        for kind in ("default", "pipeline", "send", "housekeeping"):
            channel.queue_delete(f"{installation}.{kind}")
            channel.exchange_delete(f"{installation}.{kind}")
    system.start_workers(2)
    system.start_beat()


def test_a_campaign_runs_end_to_end_with_rabbitmq_as_the_broker(system, rabbitmq):
    with Connection(RABBITMQ) as connection:
        connection.ensure_connection(max_retries=1)  # RabbitMQ answers: the test is about it
    ids = system.driver("campaigns", "1", "100")["ids"]
    assert_done_right(system, ids)
