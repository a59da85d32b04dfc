"""Settings for the test suite: the real settings, with test-only defaults for the environment.

Tests run against the real PostgreSQL and Redis (DATABASE_URL, REDIS_URL), never SQLite or a mock.
"""

import os

os.environ.setdefault("TESTING", "true")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# Its own Redis keys and queue names, so a test run never takes another installation's messages (or
# leaves its own to them); under pytest-xdist each worker process is an installation of its own, since
# every test empties its installation's keys when it starts.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
os.environ.setdefault("INSTALLATION_ID", "cbo-test")
os.environ.setdefault("REDIS_KEY_PREFIX", os.environ["INSTALLATION_ID"] + ":")
if _worker and not os.environ["INSTALLATION_ID"].endswith(f"-{_worker}"):  # child processes inherit it
    os.environ["INSTALLATION_ID"] += f"-{_worker}"
    os.environ["REDIS_KEY_PREFIX"] = os.environ["REDIS_KEY_PREFIX"].rstrip(":") + f"-{_worker}:"
os.environ.setdefault("SANDBOX_CONTROLS_TTL_SECONDS", "0")  # tests flip switches and call at once
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("WEBHOOK_SECRET", "test-webhook-secret-0123456789")
# Outgoing webhooks are delivered to a local receiver the test starts: loopback is allowed here only.
os.environ.setdefault("OUTGOING_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Throttles are tested by the tests that set their own rates; everything else runs unthrottled.
REST_FRAMEWORK = {  # noqa: F405
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {scope: "100000/min" for scope in REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]},  # noqa: F405
}
