"""Settings, read once from the environment.

Every value has a safe default for the embedded run (`make run`); production (DEBUG off) must
provide SECRET_KEY. A malformed value stops start-up with a message naming the variable.

Variables the environment does not set are taken from the checkout's environment file
(ENV_FILE, default `.run/env`), which `make run` writes: so `manage.py` commands in the same
checkout use the same DEBUG, SECRET_KEY, Redis and installation id as the running system. The
test suite never reads it.
"""

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.conf import global_settings
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from .env import env_bool, env_file_load, env_float, env_int, env_list, env_str, imap_accounts_parse

BASE_DIR = Path(__file__).resolve().parent.parent
ENV_FILE = Path(os.environ.get("ENV_FILE") or BASE_DIR / ".run" / "env")
if not env_bool("TESTING", False):
    env_file_load(ENV_FILE)

DEBUG = env_bool("DEBUG", False)
TESTING = env_bool("TESTING", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "insecure-development-key-never-use-in-production"

# Mailbox passwords (SMTP, IMAP) are stored encrypted with this Fernet key (32 url-safe base64
# bytes: `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`).
# Unset, a key is derived from SECRET_KEY (then rotating SECRET_KEY loses the stored passwords:
# a system check warns about it when DEBUG is off). A malformed key stops start-up. Rotating it:
# MAILBOX_SECRET_KEY_PREVIOUS (comma-separated) still decrypts.
MAILBOX_SECRET_KEY = env_str("MAILBOX_SECRET_KEY")
MAILBOX_SECRET_KEY_PREVIOUS = env_list("MAILBOX_SECRET_KEY_PREVIOUS", [])
for _name, _key in [("MAILBOX_SECRET_KEY", MAILBOX_SECRET_KEY)] + [
    ("MAILBOX_SECRET_KEY_PREVIOUS", key) for key in MAILBOX_SECRET_KEY_PREVIOUS
]:
    if _key:
        try:
            import base64 as _base64

            if len(_base64.urlsafe_b64decode(_key.encode())) != 32:
                raise ValueError
        except ValueError:
            raise ImproperlyConfigured(f"{_name} must be a Fernet key (32 url-safe base64-encoded bytes)") from None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if (DEBUG or TESTING) else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "campaigns_project.apps.ProjectConfig",
    "campaigns_project.apps.AdminConfig",  # django.contrib.admin with our AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our own static files
    "django_celery_beat",
    "channels",  # the WebSocket of live operations (campaigns_project/asgi.py)
    "axes",
    "integrations",
    "queue_control",
    "campaigns",
    "tracking",
]

MIDDLEWARE = [
    # Outermost: every error under /api/ leaves as JSON, whichever layer below produced it.
    "campaigns_project.middleware.ApiJSONErrorsMiddleware",
    "campaigns_project.middleware.RequestGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it answers a locked-out login attempt.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "campaigns_project.urls"
WSGI_APPLICATION = "campaigns_project.wsgi.application"
ASGI_APPLICATION = "campaigns_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded run has web, worker and beat writing at once: wait for the lock, don't fail.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FORMS_URLFIELD_ASSUME_HTTPS = True

# One installation's name for its own work on a shared Redis: its key prefix (breakers, latch,
# buckets, cache) and its Celery queues, so two checkouts on one Redis never take each other's
# messages or share a breaker. `make run` writes one per checkout into ENV_FILE.
INSTALLATION_ID = env_str("INSTALLATION_ID", "cbo")
if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", INSTALLATION_ID):
    raise ImproperlyConfigured(f"INSTALLATION_ID must be 1-40 letters, digits, - or _, got {INSTALLATION_ID!r}")
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Every key the app writes starts with this, so reset_state can delete exactly the app's keys.
REDIS_KEY_PREFIX = env_str("REDIS_KEY_PREFIX", f"{INSTALLATION_ID}:")

# django-axes first: a locked-out address or user is refused before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["campaigns_project.formats"]  # times to the second in the admin
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
LOGIN_URL = "/admin/login/"

if not DEBUG and not TESTING:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # The handler has the level too: records that propagate from Django's own loggers (a 4xx is a
    # django.request WARNING) skip the root logger's level check.
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "level": env_str("LOG_LEVEL", "INFO")}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- API ---------------------------------------------------------------------------------------
# Requests whose path and query string together are longer get a 414 from the app, in JSON;
# gunicorn.conf.py lets request lines up to 8190 bytes reach it.
MAX_REQUEST_URI_LENGTH = env_int("MAX_REQUEST_URI_LENGTH", 4096, minimum=256)

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "campaigns_project.authentication.FailedAuthLockout",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "campaigns_project.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "campaigns_project.pagination.Pagination",
    "DEFAULT_METADATA_CLASS": "campaigns_project.metadata.Metadata",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "campaigns_project.schema.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "campaigns_project.throttling.UserRateThrottle",
        "campaigns_project.throttling.AnonRateThrottle",
        "campaigns_project.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("API_THROTTLE_USER", "6000/min"),
        "anon": env_str("API_THROTTLE_ANON", "120/min"),
        # 401s per client address; over it, the address is refused before its credentials are read.
        "auth_failure": env_str("API_THROTTLE_AUTH_FAILURES", "30/min"),
        # Test sends per user: each one renders and mails a message.
        "test_send": env_str("API_THROTTLE_TEST_SEND", "10/min"),
        "tracking_webhook": env_str("API_THROTTLE_WEBHOOK", "3000/min"),
    },
    # How many proxies of ours stand in front of gunicorn and append to X-Forwarded-For. 0: the
    # header is ignored, REMOTE_ADDR is the client (see campaigns_project/net.py).
    "NUM_PROXIES": env_int("NUM_PROXIES", 0, minimum=0),
    "EXCEPTION_HANDLER": "campaigns_project.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Campaign back-office API",
    "DESCRIPTION": "Outbound campaigns, leads, jobs, queue control and tracking.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # No CDN: /api/docs/ works offline and on a locked-down network.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # FailedAuthLockout authenticates nobody: it is no security scheme.
    "AUTHENTICATION_WHITELIST": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Request bodies refuse unknown fields (campaigns_project.serializers): the schema says so.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "campaigns_project.schema.refuse_additional_properties",
    ],
}

# --- Admin login lockout (django-axes) --------------------------------------------------------
# Failures are kept in the database (AccessAttempt, readable and resettable in the admin, and they
# survive a Redis restart); a lockout lasts AXES_COOLOFF_MINUTES and a success clears the count.
# The lock is on the pair (username, address): an attacker cannot lock the real admin out from
# elsewhere, and one address cannot keep guessing one account.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_CLIENT_IP_CALLABLE = "campaigns_project.net.client_ip"
AXES_LOCKOUT_CALLABLE = "campaigns_project.throttling.admin_lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # successful logins need no row each; failures are what we keep

# Throttle counters live in Redis so every web process shares them.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX + "cache",
    }
}

# --- Celery (all task policy in one place) ----------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
# The installation's own queue, and its own broadcast channels (inspect, control, events), so a
# worker of another installation on the same broker neither takes its tasks nor answers its pings.
CELERY_TASK_DEFAULT_QUEUE = f"{INSTALLATION_ID}.default"
CELERY_CONTROL_EXCHANGE = INSTALLATION_ID
CELERY_EVENT_EXCHANGE = f"{INSTALLATION_ID}.events"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A killed worker's message is delivered again; the job claim makes the second delivery harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Engine tasks yield after ENGINE_TASK_BUDGET_SECONDS; the limits only catch a task that hangs.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 150, minimum=1)
# Longer than the longest task, so a running task's message is not handed to a second worker; short
# enough that a killed worker's message comes back in minutes (the sweeper wakes its work sooner).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300, minimum=60)}
if CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_VISIBILITY_TIMEOUT must exceed CELERY_TASK_TIME_LIMIT")
CELERY_RESULT_EXPIRES = 3600
# Job outcomes live in the Job row; a million stored task results would only fill Redis.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Extra task modules a worker loads (benchmarks/noop.py for the benchmarks; nothing by default).
CELERY_IMPORTS = env_list("CELERY_EXTRA_IMPORTS", [])
# Three queues, so no backlog starves another: pipeline work (sourcing, verification, enrichment,
# Instantly pushes), sending, and housekeeping (sweeper, reaper, opens drain, scheduled launches,
# cleanup). docker-compose.yml runs a worker for the first two and one for housekeeping.
# Outgoing webhooks to integrators' URLs have a queue of their own: a slow customer endpoint must
# never hold up campaign work or housekeeping (and they never touch a provider breaker).
CELERY_QUEUE_NAMES = {kind: f"{INSTALLATION_ID}.{kind}" for kind in ("pipeline", "send", "housekeeping", "webhooks")}
# A worker started without -Q consumes them all (the test worker; a one-process install).
# Each queue has its own exchange and routing key: a Queue without them would bind to the default
# ones, and every message would land in every queue.
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in (CELERY_TASK_DEFAULT_QUEUE, *CELERY_QUEUE_NAMES.values())
]
CELERY_TASK_ROUTES = {
    "campaigns.tasks.kick_campaign": {"queue": CELERY_QUEUE_NAMES["pipeline"]},
    "campaigns.tasks.sweep": {"queue": CELERY_QUEUE_NAMES["housekeeping"]},
    "campaigns.tasks.cleanup_old_jobs": {"queue": CELERY_QUEUE_NAMES["housekeeping"]},
    "campaigns.tasks.launch_scheduled_campaigns": {"queue": CELERY_QUEUE_NAMES["housekeeping"]},
    "campaigns.tasks.sync_instantly_analytics": {"queue": CELERY_QUEUE_NAMES["housekeeping"]},
    "tracking.tasks.drain_opens": {"queue": CELERY_QUEUE_NAMES["housekeeping"]},
    "tracking.tasks.publish_live": {"queue": CELERY_QUEUE_NAMES["housekeeping"]},
    "tracking.tasks.check_deliverability": {"queue": CELERY_QUEUE_NAMES["housekeeping"]},
    "tracking.tasks.deliver_webhooks": {"queue": CELERY_QUEUE_NAMES["webhooks"]},
    "tracking.tasks.webhooks_upkeep": {"queue": CELERY_QUEUE_NAMES["webhooks"]},
    "tracking.tasks.poll_imap": {"queue": CELERY_QUEUE_NAMES["housekeeping"]},
    # campaigns.tasks.work goes to the queue its job types belong to; campaigns.dispatch names it.
}

# --- The engine -------------------------------------------------------------------------------
# Leads per verification / enrichment job, recipients per send job.
ENGINE_BATCH_SIZE = env_int("ENGINE_BATCH_SIZE", 1000, minimum=1)
SEND_BATCH_SIZE = env_int("SEND_BATCH_SIZE", 500, minimum=1)
# Wake-ups in flight per campaign and queue: how many workers one campaign may use at once.
ENGINE_CAMPAIGN_PARALLELISM = env_int("ENGINE_CAMPAIGN_PARALLELISM", 8, minimum=1)
# A task works on its job this long, then yields the worker (the job continues in the next task).
ENGINE_TASK_BUDGET_SECONDS = env_float("ENGINE_TASK_BUDGET_SECONDS", 30.0, minimum=0)
# A running job shows it is alive this often (updated_at); one silent for JOB_STUCK_AFTER_SECONDS
# lost its worker, and the sweeper takes it back.
ENGINE_HEARTBEAT_SECONDS = env_float("ENGINE_HEARTBEAT_SECONDS", 10.0, minimum=0.1)
JOB_STUCK_AFTER_SECONDS = env_int("JOB_STUCK_AFTER_SECONDS", 60, minimum=1)
if JOB_STUCK_AFTER_SECONDS < 3 * ENGINE_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        f"JOB_STUCK_AFTER_SECONDS ({JOB_STUCK_AFTER_SECONDS}) must be at least three heartbeats "
        f"(ENGINE_HEARTBEAT_SECONDS = {ENGINE_HEARTBEAT_SECONDS})"
    )
# Pending work nobody has touched for this long has lost its wake-up: the sweeper sends another.
ENGINE_STRANDED_AFTER_SECONDS = env_int("ENGINE_STRANDED_AFTER_SECONDS", 30, minimum=1)
# Results of a batch are written at least this often (and every ENGINE_FLUSH_ITEMS results).
ENGINE_FLUSH_SECONDS = env_float("ENGINE_FLUSH_SECONDS", 0.5, minimum=0)
ENGINE_FLUSH_ITEMS = env_int("ENGINE_FLUSH_ITEMS", 200, minimum=1)

# --- Product -----------------------------------------------------------------------------------
CAMPAIGN_MAX_LEAD_COUNT = env_int("CAMPAIGN_MAX_LEAD_COUNT", 50_000, minimum=1)
# The highest send rate a campaign may set; the shared bucket enforces the campaign's own.
CAMPAIGN_MAX_SEND_RATE_PER_MINUTE = env_int("CAMPAIGN_MAX_SEND_RATE_PER_MINUTE", 600_000, minimum=1)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
JOB_RETRY_BACKOFF_SECONDS = env_float("JOB_RETRY_BACKOFF_SECONDS", 2.0, minimum=0)
JOB_RETENTION_DAYS = env_int("JOB_RETENTION_DAYS", 30, minimum=0)
# A recipient is tried this many times (4xx replies, released batches) before it fails.
RECIPIENT_MAX_SEND_ATTEMPTS = env_int("RECIPIENT_MAX_SEND_ATTEMPTS", 5, minimum=1)
# Campaign templates (campaigns/templating.py): the largest body an operator may save, and the
# bounds of one rendered message (subject and body together): characters produced, and steps
# (nodes rendered plus loop iterations) taken.
CAMPAIGN_BODY_TEMPLATE_MAX_CHARS = env_int("CAMPAIGN_BODY_TEMPLATE_MAX_CHARS", 100_000, minimum=1)
CAMPAIGN_RENDER_MAX_CHARS = env_int("CAMPAIGN_RENDER_MAX_CHARS", 256 * 1024, minimum=1)
CAMPAIGN_RENDER_MAX_STEPS = env_int("CAMPAIGN_RENDER_MAX_STEPS", 20_000, minimum=1)

# --- Providers: a key switches the real client on; without one, the sandbox answers ----------
PROVIDERS = {
    "apollo": {
        "api_key": env_str("APOLLO_API_KEY"),
        "base_url": env_str("APOLLO_BASE_URL", "https://api.apollo.io"),
    },
    "millionverifier": {
        "api_key": env_str("MILLIONVERIFIER_API_KEY"),
        "base_url": env_str("MILLIONVERIFIER_BASE_URL", "https://api.millionverifier.com"),
    },
    "openai": {
        "api_key": env_str("OPENAI_API_KEY"),
        "base_url": env_str("OPENAI_BASE_URL", "https://api.openai.com"),
        "model": env_str("OPENAI_MODEL", "gpt-4o-mini"),
    },
    "perplexity": {
        "api_key": env_str("PERPLEXITY_API_KEY"),
        "base_url": env_str("PERPLEXITY_BASE_URL", "https://api.perplexity.ai"),
        "model": env_str("PERPLEXITY_MODEL", "sonar"),
    },
    "instantly": {
        "api_key": env_str("INSTANTLY_API_KEY"),
        "base_url": env_str("INSTANTLY_BASE_URL", "https://api.instantly.ai"),
    },
}
PROVIDER_TIMEOUT_SECONDS = env_float("PROVIDER_TIMEOUT_SECONDS", 20.0, minimum=0.1)
PROVIDER_MAX_RETRIES = env_int("PROVIDER_MAX_RETRIES", 2, minimum=0)
PROVIDER_RETRY_BACKOFF_SECONDS = env_float("PROVIDER_RETRY_BACKOFF_SECONDS", 0.5, minimum=0)
PROVIDER_RETRY_AFTER_MAX_SECONDS = env_float("PROVIDER_RETRY_AFTER_MAX_SECONDS", 30.0, minimum=0)
ENRICHMENT_PROVIDER = env_str("ENRICHMENT_PROVIDER", "openai")
if ENRICHMENT_PROVIDER not in ("openai", "perplexity"):
    raise ImproperlyConfigured(f"ENRICHMENT_PROVIDER must be openai or perplexity, got {ENRICHMENT_PROVIDER!r}")
SANDBOX_LATENCY_MS = env_int("SANDBOX_LATENCY_MS", 0, minimum=0)
# How long a process keeps the operators' sandbox switches before reading them again.
SANDBOX_CONTROLS_TTL_SECONDS = env_float("SANDBOX_CONTROLS_TTL_SECONDS", 1.0, minimum=0)
# Comma-separated services whose sandbox fails every call (failure injection from the environment).
SANDBOX_FAIL = env_list("SANDBOX_FAIL", [])

# Every service with a breaker: the providers above and our own SMTP path. The one list.
SERVICES = tuple(sorted([*PROVIDERS, "smtp"]))
BREAKERS = {
    service: {
        "threshold": env_int(f"BREAKER_{service.upper()}_THRESHOLD", 3, minimum=1),
        "window": env_int(f"BREAKER_{service.upper()}_WINDOW", 60, minimum=1),
    }
    for service in SERVICES
}
# Every sender mailbox has an SMTP breaker of its own, with the smtp breaker's threshold and
# window (queue_control.breakers: names `mailbox.<id>`); it pauses that mailbox only.
# The deliverability guard (tracking/deliverability.py): per campaign and per mailbox, after at
# least DELIVERABILITY_MIN_SENDS sends, a bounce rate above DELIVERABILITY_BOUNCE_RATE or a
# complaint rate above DELIVERABILITY_COMPLAINT_RATE (0.3 %, the Gmail and Yahoo bulk-sender
# ceiling) pauses it (cause `deliverability`).
DELIVERABILITY_MIN_SENDS = env_int("DELIVERABILITY_MIN_SENDS", 100, minimum=1)
DELIVERABILITY_BOUNCE_RATE = env_float("DELIVERABILITY_BOUNCE_RATE", 0.05, minimum=0)
DELIVERABILITY_COMPLAINT_RATE = env_float("DELIVERABILITY_COMPLAINT_RATE", 0.003, minimum=0)
# A burst of bounces checks a campaign at most once per this many seconds, plus one trailing
# check at its end (0: after every bounce or complaint).
DELIVERABILITY_CHECK_SECONDS = env_float("DELIVERABILITY_CHECK_SECONDS", 1.0, minimum=0)
for _name in ("DELIVERABILITY_BOUNCE_RATE", "DELIVERABILITY_COMPLAINT_RATE"):
    if globals()[_name] >= 1:
        raise ImproperlyConfigured(f"{_name} is a fraction (0.05 for 5 %), got {globals()[_name]}")
# Each provider's shared rate limit in calls per second (a Redis token bucket every worker
# draws from; 0 = none) and the calls one job keeps in flight at once. The defaults stay under the
# providers' documented limits (PROVIDERS.md): Instantly 100/s per workspace, Perplexity's lowest
# tier about 50/min; MillionVerifier and OpenAI allow more than these.
_RATE_DEFAULTS = {"apollo": 5.0, "instantly": 20.0, "millionverifier": 100.0, "openai": 50.0, "perplexity": 0.8}
PROVIDER_RATE_LIMITS = {
    service: env_float(f"PROVIDER_{service.upper()}_RATE", default, minimum=0)
    for service, default in _RATE_DEFAULTS.items()
}
PROVIDER_CONCURRENCY = {
    service: env_int(
        f"PROVIDER_{service.upper()}_CONCURRENCY", 32 if service in ("millionverifier", "openai") else 4, minimum=1
    )
    for service in _RATE_DEFAULTS
}
for _bad in set(SANDBOX_FAIL) - set(SERVICES):
    raise ImproperlyConfigured(f"SANDBOX_FAIL names an unknown service {_bad!r}; known: {', '.join(SERVICES)}")

# --- Email ------------------------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20, minimum=1)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / ".run" / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "campaigns@example.com")

# --- Provider webhooks (tracking/webhooks.py: one verifier per provider) ------------------------
# WEBHOOK_SECRET_<PROVIDER> overrides WEBHOOK_SECRET for one provider. With DEBUG off every provider
# needs one, of at least 16 characters; with DEBUG on there is no default either: a webhook with
# no secret configured is refused (401), so no public default can ever authenticate anything.
WEBHOOK_PROVIDERS = ("generic", "instantly")
WEBHOOK_SECRET = env_str("WEBHOOK_SECRET")
WEBHOOK_SECRETS = {p: env_str(f"WEBHOOK_SECRET_{p.upper()}", WEBHOOK_SECRET) for p in WEBHOOK_PROVIDERS}
if not (DEBUG or TESTING):
    _weak = [p for p, secret in WEBHOOK_SECRETS.items() if len(secret) < 16]
    if _weak:
        raise ImproperlyConfigured(
            "WEBHOOK_SECRET (or WEBHOOK_SECRET_<PROVIDER>) of at least 16 characters is required when "
            f"DEBUG is off; missing or too short for: {', '.join(_weak)}"
        )
# How far a signed timestamp may be from our clock (seconds): a captured request is refused once
# it is older than this, and the event ids recorded meanwhile refuse its replays within it.
WEBHOOK_TOLERANCE_SECONDS = env_int("WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1)
# Event times a provider reports are accepted within this window around now; outside it the
# event is recorded at the time received, and the answer says so.
EVENT_TIME_MAX_AGE_DAYS = env_int("EVENT_TIME_MAX_AGE_DAYS", 30, minimum=1)
EVENT_TIME_MAX_AHEAD_SECONDS = env_int("EVENT_TIME_MAX_AHEAD_SECONDS", 3600, minimum=0)

# --- Replies by mail (docs/flows/replies.md: tracking/inbound.py, tracking/imap.py) ------------
# The inbound-mail endpoint (POST /api/v1/webhooks/inbound-mail/) takes raw MIME signed like the
# generic webhook (Standard Webhooks) or with `Authorization: Bearer <secret>`. No secret: every
# request is refused (401), so it is safe to leave unset where no relay posts mail.
INBOUND_MAIL_SECRET = env_str("INBOUND_MAIL_SECRET") or WEBHOOK_SECRET  # set but empty: the fallback too
# A message larger than this is refused (413) before it is parsed; under Django's own body limit.
INBOUND_MAIL_MAX_BYTES = env_int("INBOUND_MAIL_MAX_BYTES", 1024 * 1024, minimum=1024)
_BODY_LIMIT = global_settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # Django's own limit (not overridden here)
if INBOUND_MAIL_MAX_BYTES > _BODY_LIMIT:
    raise ImproperlyConfigured(f"INBOUND_MAIL_MAX_BYTES must be at most {_BODY_LIMIT}, got {INBOUND_MAIL_MAX_BYTES}")
# An address whose plus-addresses the mail server routes to the inbound-mail endpoint (an ESP's
# inbound route, a catch-all relay): set, every campaign message without a Reply-To of its own
# carries Reply-To `<local>+<recipient token>@<domain>`, so a reply that lost its In-Reply-To and
# References still names its recipient. Empty by default: replies go to the sender's mailbox.
INBOUND_REPLY_ADDRESS = env_str("INBOUND_REPLY_ADDRESS", "").strip()
if INBOUND_REPLY_ADDRESS and not re.fullmatch(r"[^@+\s]{1,40}@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", INBOUND_REPLY_ADDRESS):
    raise ImproperlyConfigured(
        f"INBOUND_REPLY_ADDRESS must be an address with no + in its local part, got {INBOUND_REPLY_ADDRESS!r}"
    )
# Sender mailboxes the reply poller reads: a JSON list of {key, host, port?, username, password,
# ssl?, folder?} (tracking.imap.imap_accounts). Empty by default.
IMAP_ACCOUNTS = imap_accounts_parse(env_str("IMAP_ACCOUNTS", ""))
IMAP_TIMEOUT_SECONDS = env_int("IMAP_TIMEOUT_SECONDS", 30, minimum=1)
# IDLE is renewed this often (RFC 2177: servers may drop an IDLE after 30 minutes).
IMAP_IDLE_SECONDS = env_int("IMAP_IDLE_SECONDS", 300, minimum=1)
# A mailbox seen for the first time (or whose UIDVALIDITY changed) is read this far back.
IMAP_LOOKBACK_DAYS = env_int("IMAP_LOOKBACK_DAYS", 14, minimum=1)
# The keyword set on each message the poller has handled (a human's unread mail stays unread).
IMAP_PROCESSED_KEYWORD = env_str("IMAP_PROCESSED_KEYWORD", "$OutreachProcessed")
if not re.fullmatch(r"\$?[A-Za-z][A-Za-z0-9_]{0,62}", IMAP_PROCESSED_KEYWORD):
    raise ImproperlyConfigured(f"IMAP_PROCESSED_KEYWORD must be an IMAP keyword atom, got {IMAP_PROCESSED_KEYWORD!r}")
# Messages fetched per IMAP FETCH in one poll, and at most this many per account and poll.
IMAP_FETCH_BATCH = env_int("IMAP_FETCH_BATCH", 50, minimum=1)
IMAP_MAX_MESSAGES_PER_POLL = env_int("IMAP_MAX_MESSAGES_PER_POLL", 500, minimum=1)

# --- Live operations (docs/flows/live.md) -----------------------------------------------------
# The WebSocket's channel layer: the same Redis, its keys under the installation's prefix.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # A socket timeout above channels_redis' 5 s BZPOPMIN: redis-py's asyncio default (5 s)
            # races it and kills the consumer with a TimeoutError (seen under make run).
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
            "prefix": REDIS_KEY_PREFIX + "asgi",
            "capacity": 500,
            "expiry": 30,
        },
    }
}
# Where the dashboard's browser connects; empty: the page's own origin (make run serves HTTP and
# the WebSocket on one port; in docker-compose.yml the `ws` service serves it behind your proxy).
LIVE_WEBSOCKET_URL = env_str("LIVE_WEBSOCKET_URL", "")
# The send rate and the ETA are measured over this sliding window.
LIVE_RATE_WINDOW_SECONDS = env_int("LIVE_RATE_WINDOW_SECONDS", 60, minimum=5)
# Running campaigns are published at least this often even when nothing changed (rate, ETA).
LIVE_REFRESH_SECONDS = env_int("LIVE_REFRESH_SECONDS", 5, minimum=1)
# Campaigns published per tick at most; the others wait for the next tick (a second later).
LIVE_PUBLISH_BATCH = env_int("LIVE_PUBLISH_BATCH", 500, minimum=1)

# --- Outgoing webhooks (docs/flows/outgoing-webhooks.md) ---------------------------------------
OUTGOING_WEBHOOK_TIMEOUT_SECONDS = env_float("OUTGOING_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# A failing endpoint is retried after base · 2^(failures-1) seconds, at most max_delay.
OUTGOING_WEBHOOK_RETRY_BASE_SECONDS = env_float("OUTGOING_WEBHOOK_RETRY_BASE_SECONDS", 5.0, minimum=0)
OUTGOING_WEBHOOK_RETRY_MAX_DELAY_SECONDS = env_float("OUTGOING_WEBHOOK_RETRY_MAX_DELAY_SECONDS", 3600.0, minimum=0)
# A delivery is retried for this long, then given up (failed, still replayable by an operator).
OUTGOING_WEBHOOK_RETRY_FOR_SECONDS = env_int("OUTGOING_WEBHOOK_RETRY_FOR_SECONDS", 24 * 3600, minimum=1)
# An endpoint that has not answered 2xx for this long is disabled and its organization told.
OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS = env_int("OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS", 3 * 24 * 3600, minimum=1)
OUTGOING_WEBHOOK_BATCH = env_int("OUTGOING_WEBHOOK_BATCH", 50, minimum=1)
# Each process checks this often whether the endpoints changed (a version in Redis) before
# trusting its cached subscriptions: a new endpoint gets events within this time.
OUTGOING_WEBHOOK_SUBSCRIPTIONS_TTL = env_float("OUTGOING_WEBHOOK_SUBSCRIPTIONS_TTL", 2.0, minimum=0)
# Deliveries (and their events) older than this are deleted by the daily upkeep.
OUTGOING_WEBHOOK_RETENTION_DAYS = env_int("OUTGOING_WEBHOOK_RETENTION_DAYS", 30, minimum=1)
# Deliveries go only to public addresses. Networks listed here (CIDR, comma-separated) are allowed
# even if private or loopback: an internal receiver, or the tests' local one (127.0.0.0/8).
try:
    OUTGOING_WEBHOOK_ALLOWED_NETWORKS = [
        ipaddress.ip_network(value, strict=False) for value in env_list("OUTGOING_WEBHOOK_ALLOWED_NETWORKS", [])
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"OUTGOING_WEBHOOK_ALLOWED_NETWORKS: {exc}") from None

# --- Metrics (/metrics, Prometheus text format) -------------------------------------------------
# With DEBUG off, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` (or a staff session);
# without a token set it answers staff only.
METRICS_TOKEN = env_str("METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters")
# A scrape's database figures are cached this long, so many scrapers cost one set of queries.
METRICS_CACHE_SECONDS = env_float("METRICS_CACHE_SECONDS", 5.0, minimum=0)
# The dashboard's scripts (Chart.js among them) come from the apps' static folders; WhiteNoise
# serves them from there under the embedded run and the test servers, from STATIC_ROOT otherwise.
WHITENOISE_USE_FINDERS = DEBUG or TESTING
