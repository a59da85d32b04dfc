"""docker-compose.yml cannot run here (no engine), so parse it with Debian's docker-compose."""

import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose_config(**env):
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: `make system-deps` installs Debian's package"
    return subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        cwd=ROOT,
    )


def test_the_compose_file_is_valid_and_has_the_production_shape():
    result = compose_config(SECRET_KEY="test", WEBHOOK_SECRET="a-webhook-secret-of-16+")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    for name in ("postgres", "redis", "web", "worker", "beat"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert "gunicorn" in " ".join(services["web"]["command"])
    assert services["worker"].get("container_name") is None, "a fixed container_name would prevent --scale worker=N"
    assert services["web"]["environment"]["DEBUG"] == "false"
    assert services["web"]["environment"]["DATABASE_URL"].startswith("postgres://")


def test_the_compose_file_serves_the_websocket_and_runs_webhooks_on_their_own_worker():
    result = compose_config(SECRET_KEY="test", WEBHOOK_SECRET="a-webhook-secret-of-16+")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    ws = " ".join(services["ws"]["command"])
    assert "uvicorn campaigns_project.asgi:application" in ws and "healthcheck" in services["ws"]
    assert "gunicorn campaigns_project.wsgi:application" in " ".join(services["web"]["command"])  # HTTP stays WSGI
    hooks = services["webhooks"]["command"]
    assert hooks[hooks.index("-Q") + 1] == "cbo.webhooks" and "healthcheck" in services["webhooks"]
    for name, service in services.items():  # no other worker takes deliveries
        command = service.get("command") or []
        if name == "webhooks" or "worker" not in command:
            continue
        if "-Q" in command:
            assert "cbo.webhooks" not in command[command.index("-Q") + 1].split(","), name
        else:
            assert command[command.index("-X") + 1] == "cbo.webhooks", name
    assert services["web"]["environment"]["LIVE_WEBSOCKET_URL"] == "ws://localhost:8001/ws/live/"


def test_the_compose_file_refuses_to_start_without_a_secret_key():
    result = compose_config(WEBHOOK_SECRET="a-webhook-secret-of-16+")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_the_compose_file_refuses_to_start_without_a_webhook_secret():
    result = compose_config(SECRET_KEY="test")
    assert result.returncode != 0
    assert "WEBHOOK_SECRET" in result.stderr


def test_the_compose_workers_consume_the_queues_the_settings_route_to():
    """Campaign work (pipeline and send queues) scales as `worker`; housekeeping has its own
    worker, so no campaign backlog delays the sweeper or the opens drain."""
    result = compose_config(SECRET_KEY="test", WEBHOOK_SECRET="a-webhook-secret-of-16+", INSTALLATION_ID="prod")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]

    def queues(service: str) -> set[str]:
        command = services[service]["command"]
        return set(command[command.index("-Q") + 1].split(","))

    assert queues("worker") == {"prod.pipeline", "prod.send", "prod.default"}
    assert queues("housekeeping") == {"prod.housekeeping"}
    assert services["worker"]["environment"]["INSTALLATION_ID"] == "prod"
    assert "healthcheck" in services["housekeeping"]
