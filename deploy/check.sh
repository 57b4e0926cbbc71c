#!/usr/bin/env bash
# The end-to-end check: tracker on two gunicorn "hosts" behind nginx, two schedulers, Redis and an
# SMTP sink on this machine; a mixed load while a host, the active scheduler and Redis are killed.
# Fails unless everything held. Needs PostgreSQL on 127.0.0.1:5432 (user postgres), nginx and
# redis-server; its database tracker_check is dropped and created. See README "Deployment".
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in nginx redis-server; do
  command -v "$tool" >/dev/null || { echo "check: $tool is missing (apt-get install $tool)"; exit 1; }
done
# No-ops when .venv and the .mo files are current; their output only when they fail.
if ! out="$(make --quiet install-dev compile-translations 2>&1)"; then
  echo "$out"
  exit 1
fi

work="$(mktemp -d /tmp/tracker-check-XXXXXX)"
chmod 755 "$work"
export CHECK_WORK="$work"

# Whatever happens to the driver, end every process it started that still runs (each leads its
# own process group). A pid reused by another program has neither CHECK_WORK in its environment
# nor the folder on its command line (nginx rewrites its environment but keeps -p <folder>).
ours() {
  local command
  grep -qzx "CHECK_WORK=$work" "/proc/$1/environ" 2>/dev/null && return 0
  [[ -r "/proc/$1/cmdline" ]] || return 1  # ended already
  command="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
  [[ "$command" == *"$work"* ]]
}
cleanup() {
  if [[ -f "$work/pids" ]]; then
    while read -r pid; do
      if ours "$pid"; then
        kill -KILL -- "-$pid" 2>/dev/null || true
      fi
    done <"$work/pids"
  fi
}
trap cleanup EXIT

.venv/bin/python deploy/check.py "$@"
