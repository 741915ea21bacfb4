#!/usr/bin/env bash
# Runs the web server and one Celery worker (all queues, with beat) until Ctrl-C.
# Without REDIS_URL the worker and web share the filesystem broker under var/broker/.
set -euo pipefail
host=${1:-127.0.0.1}
port=${2:-8000}
cd "$(dirname "$0")/.."
mkdir -p var/log
# The demo's logins and passwords are printed for anyone: a second factor would protect nothing
# here, so it is optional (an enrolled user is still asked). Deployments keep the default (on).
export MFA_REQUIRED="${MFA_REQUIRED:-false}"
.venv/bin/celery -A config worker -B -Q default,scans,letters --concurrency 2 \
  --loglevel INFO --logfile var/log/worker.log --schedule var/celerybeat-schedule &
worker=$!
stop_worker() {
  # A warm shutdown first; a worker that has not exited after 10 s is stopped hard.
  kill "$worker" 2>/dev/null || return 0
  for _ in $(seq 20); do kill -0 "$worker" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$worker" 2>/dev/null || true
}
trap stop_worker EXIT INT TERM
echo
echo "Secure Your Server is running at http://$host:$port/admin/"
echo "  admin login: admin / admin-demo-password (partner staff: see above)"
echo "  worker log:  var/log/worker.log   letters written to: var/mail/"
echo "  two-factor sign-in: optional in this demo (MFA_REQUIRED=$MFA_REQUIRED); try it at /admin/mfa/"
echo
.venv/bin/python manage.py runserver "$host:$port" --noreload
