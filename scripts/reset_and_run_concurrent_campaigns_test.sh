#!/usr/bin/env bash
# Runbook: reset the state, run the concurrent campaigns smoke run, validate the results.
#
# Exit codes, one per failing phase:
#   0 success            10 prerequisites      11 log file       12 reset_state (or the re-seed after it)
#   13 worker start      14 smoke run failed   15 validation     3 a breaker paused the queue
set -Eeuo pipefail

CAMPAIGNS=10
LEADS=20
TIMEOUT=120
COMPOSE=0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_FILE="${LOG_FILE:-$ROOT/.run/smoke.log}"
REPORT="${REPORT:-$ROOT/.run/smoke-report.json}"
PHASE="start"
WORKER_PID=""
REDIS_PID=""

if [ -t 1 ]; then
  BOLD=$'\e[1m'; GREEN=$'\e[32m'; RED=$'\e[31m'; YELLOW=$'\e[33m'; RESET=$'\e[0m'
else
  BOLD=""; GREEN=""; RED=""; YELLOW=""; RESET=""
fi

usage() {
  cat <<EOF
Usage: $(basename "$0") [--campaigns N] [--leads M] [--timeout SECONDS] [--compose] [--help]

Resets the app state, re-creates the demo organization and admin user, runs N campaigns of M
leads concurrently on the sandbox providers and validates the outcome. Locally it uses the same
settings as 'make run' in this checkout (.run/env: database, Redis, installation id; otherwise
SQLite and Redis at REDIS_URL or an embedded redis-server) and starts its own Celery worker.
With --compose it runs the same steps inside the running 'docker compose' services (web and
worker).

  --campaigns N   campaigns to run (default 10)
  --leads M       leads per campaign (default 20)
  --timeout S     give up after S seconds (default 120)
  --compose       run inside docker compose instead of locally
  --help          this text

Exit codes: 0 ok, 3 paused by a breaker, 10 prerequisites, 11 log file, 12 reset, 13 worker,
14 smoke run, 15 validation.
EOF
}

step() { printf '%s==> [%s] %s%s\n' "$BOLD" "$PHASE" "$1" "$RESET"; }
ok() { printf '%s    ok: %s%s\n' "$GREEN" "$1" "$RESET"; }
fail() { printf '%s    FAILED [%s]: %s%s\n' "$RED" "$PHASE" "$1" "$RESET" >&2; exit "$2"; }

cleanup() {
  [ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" 2>/dev/null || true
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
}
on_error() {
  local code=$?
  printf '%s    unexpected error in phase %s (line %s, exit %s); see %s%s\n' \
    "$RED" "$PHASE" "$1" "$code" "$LOG_FILE" "$RESET" >&2
}
trap cleanup EXIT
trap 'on_error $LINENO' ERR

while [ $# -gt 0 ]; do
  case "$1" in
    --campaigns) CAMPAIGNS="$2"; shift 2 ;;
    --leads) LEADS="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --compose) COMPOSE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 10 ;;
  esac
done
[[ "$CAMPAIGNS" =~ ^[1-9][0-9]*$ ]] || { echo "--campaigns must be a positive integer" >&2; exit 10; }
[[ "$LEADS" =~ ^[1-9][0-9]*$ ]] || { echo "--leads must be a positive integer" >&2; exit 10; }

cd "$ROOT"
if [ "$COMPOSE" = 1 ]; then
  manage() { docker compose exec -T web python manage.py "$@"; }
  REPORT_IN=/tmp/smoke-report.json
else
  PY="$ROOT/.venv/bin/python"
  manage() { "$PY" "$ROOT/manage.py" "$@"; }
  REPORT_IN="$REPORT"
  # The checkout's settings as 'make run' wrote them, for every variable not already set, so the
  # worker started here and the commands reach the same database, Redis and queues.
  ENV_FILE="${ENV_FILE:-$ROOT/.run/env}"
  if [ -f "$ENV_FILE" ]; then
    while IFS= read -r line; do
      case "$line" in ''|\#*) continue ;; esac
      key="${line%%=*}"
      if [ -z "${!key+set}" ]; then export "$key=${line#*=}"; fi
    done < "$ENV_FILE"
  fi
  export DEBUG="${DEBUG:-true}"
fi

PHASE="prerequisites"
step "checking the services are reachable"
if [ "$COMPOSE" = 1 ]; then
  command -v docker >/dev/null || fail "docker is not installed" 10
  docker compose ps --status running web worker >/dev/null 2>&1 || fail "docker compose services web and worker are not running" 10
else
  [ -x "$PY" ] || fail "no virtualenv: run 'make run' or 'make venv' first" 10
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/1}"
  if ! "$PY" -c "import redis,sys; redis.Redis.from_url('$REDIS_URL', socket_connect_timeout=1).ping()" 2>/dev/null; then
    read -r REDIS_URL REDIS_PID < <("$PY" "$ROOT/scripts/embedded_redis.py")
    export REDIS_URL
    ok "started an embedded redis-server at $REDIS_URL"
  fi
  manage migrate --noinput >/dev/null || fail "database not reachable or migrations failed" 10
fi
manage shell --no-imports -c "from campaigns_project.health import healthz; from django.test import RequestFactory; r = healthz(RequestFactory().get('/healthz')); assert r.status_code == 200, r.content" \
  || fail "health check failed (database or Redis)" 10
ok "database and Redis answer"

PHASE="log"
step "truncating $LOG_FILE"
mkdir -p "$(dirname "$LOG_FILE")" && : > "$LOG_FILE" || fail "cannot write $LOG_FILE" 11
ok "log truncated"

PHASE="reset"
step "reset_state --yes"
manage reset_state --yes >>"$LOG_FILE" 2>&1 || fail "reset_state failed" 12
ok "state reset"
step "seed_demo (the demo organization and admin user, gone with the reset)"
manage seed_demo 2>>"$LOG_FILE" | tee -a "$LOG_FILE" || fail "seed_demo failed" 12
ok "demo organization and admin user re-created"

PHASE="worker"
if [ "$COMPOSE" = 0 ]; then
  step "starting a Celery worker"
  "$PY" -m celery -A campaigns_project worker --loglevel info --concurrency 2 --without-gossip --without-mingle \
    >>"$LOG_FILE" 2>&1 &
  WORKER_PID=$!
  for _ in $(seq 1 60); do
    "$PY" -m celery -A campaigns_project inspect ping --timeout 1 >/dev/null 2>&1 && break
    kill -0 "$WORKER_PID" 2>/dev/null || fail "the worker exited; see $LOG_FILE" 13
    sleep 0.5
  done
  "$PY" -m celery -A campaigns_project inspect ping --timeout 2 >/dev/null 2>&1 || fail "the worker does not answer" 13
  ok "worker $WORKER_PID answers"
fi

PHASE="smoke-run"
step "run_concurrent_campaigns --campaigns $CAMPAIGNS --leads $LEADS"
set +e
manage run_concurrent_campaigns --campaigns "$CAMPAIGNS" --leads "$LEADS" --timeout "$TIMEOUT" --poll 1 \
  --json "$REPORT_IN" 2>&1 | tee -a "$LOG_FILE"
RUN_CODE=${PIPESTATUS[0]}
set -e
if [ "$RUN_CODE" = 3 ]; then
  printf '%s    a breaker paused the queue: the run stopped safely (exit 3); see the report above%s\n' "$YELLOW" "$RESET"
  exit 3
fi
[ "$RUN_CODE" = 0 ] || fail "the smoke run exited $RUN_CODE" 14
ok "smoke run completed"

PHASE="validate"
step "checking the database against the expected counts"
manage shell --no-imports -c "
from campaigns.models import Campaign, Lead
expected_campaigns, expected_leads = $CAMPAIGNS, $CAMPAIGNS * $LEADS
completed = Campaign.objects.filter(status='completed').count()
leads = Lead.objects.count()
print(f'campaigns completed: {completed}/{expected_campaigns}, leads: {leads}/{expected_leads}')
assert completed == expected_campaigns, 'not every campaign completed'
assert leads == expected_leads, 'lead count differs'
" 2>&1 | tee -a "$LOG_FILE"
[ "${PIPESTATUS[0]}" = 0 ] || fail "the database does not hold the expected results" 15
ok "all $CAMPAIGNS campaigns completed with $((CAMPAIGNS * LEADS)) leads"
printf '%sDone.%s Report: %s, log: %s\n' "$GREEN" "$RESET" "$REPORT" "$LOG_FILE"
