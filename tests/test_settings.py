"""Settings are read once, strictly: a bad value stops start-up naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEBUG", "TESTING", "SECRET_KEY", "DATABASE_URL") and not k.startswith("WEBHOOK_SECRET")
    }
    # Not the checkout's .run/env, which a `make run` here may have written (DEBUG=true, a key).
    clean["ENV_FILE"] = str(ROOT / ".run" / "no-such-env-file")
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import campaigns_project.settings as s; print(s.DEBUG, s.DATABASES['default']['ENGINE'])",
        ],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
    )


def test_debug_is_off_by_default_and_then_a_secret_key_is_required():
    result = load_settings()
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


WEBHOOK = "a-webhook-secret-of-16+"


def test_production_settings_load_with_a_secret_key_and_a_webhook_secret():
    result = load_settings(SECRET_KEY="s3cret", WEBHOOK_SECRET=WEBHOOK, DATABASE_URL="postgres://u@db:5432/x")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "django.db.backends.postgresql"]


def test_the_embedded_default_is_debug_on_sqlite():
    result = load_settings(DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django.db.backends.sqlite3"]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WEBHOOK_SECRET": "short"},
        {"WEBHOOK_SECRET_GENERIC": WEBHOOK},  # instantly still has none
    ],
)
def test_production_refuses_to_start_without_a_webhook_secret_for_every_provider(env):
    result = load_settings(SECRET_KEY="s3cret", **env)
    assert result.returncode != 0
    assert "WEBHOOK_SECRET" in result.stderr and "required when DEBUG is off" in result.stderr


def test_per_provider_webhook_secrets_suffice_in_production():
    result = load_settings(SECRET_KEY="s3cret", WEBHOOK_SECRET_GENERIC=WEBHOOK, WEBHOOK_SECRET_INSTANTLY=WEBHOOK + "x")
    assert result.returncode == 0, result.stderr


def test_with_debug_on_there_is_no_public_default_webhook_secret():
    result = subprocess.run(
        [sys.executable, "-c", "import campaigns_project.settings as s; print(s.WEBHOOK_SECRETS)"],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOK", "TESTING"))}, "DEBUG": "true"},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'generic': '', 'instantly': ''}"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("CAMPAIGN_MAX_LEAD_COUNT", "lots", "CAMPAIGN_MAX_LEAD_COUNT must be an integer"),
        ("BREAKER_APOLLO_THRESHOLD", "0", "BREAKER_APOLLO_THRESHOLD must be at least 1"),
        ("SANDBOX_FAIL", "apolo", "SANDBOX_FAIL names an unknown service"),
        ("ENRICHMENT_PROVIDER", "gpt", "ENRICHMENT_PROVIDER must be openai or perplexity"),
        ("INBOUND_REPLY_ADDRESS", "replies+x@inbound.example.com", "INBOUND_REPLY_ADDRESS must be an address"),
        ("INBOUND_REPLY_ADDRESS", "replies", "INBOUND_REPLY_ADDRESS must be an address"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(name, value, message):
    result = load_settings(SECRET_KEY="x", WEBHOOK_SECRET=WEBHOOK, **{name: value})
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAILBOX_SECRET_KEY": "not-a-fernet-key"}, "MAILBOX_SECRET_KEY must be a Fernet key"),
        ({"MAILBOX_SECRET_KEY_PREVIOUS": "c2hvcnQ="}, "MAILBOX_SECRET_KEY_PREVIOUS must be a Fernet key"),
        ({"DELIVERABILITY_BOUNCE_RATE": "5"}, "DELIVERABILITY_BOUNCE_RATE is a fraction"),
        ({"DELIVERABILITY_MIN_SENDS": "0"}, "DELIVERABILITY_MIN_SENDS must be at least 1"),
    ],
)
def test_mailbox_and_deliverability_settings_are_strict(env, message):
    result = load_settings(DEBUG="true", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_well_formed_mailbox_secret_key_loads():
    key = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="  # 32 bytes, url-safe base64
    result = load_settings(DEBUG="true", MAILBOX_SECRET_KEY=key)
    assert result.returncode == 0, result.stderr
