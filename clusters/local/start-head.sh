#!/usr/bin/env bash
# Start the head node of a Ray cluster on this machine (Ray's own `ray start --head`).
#
#   clusters/local/start-head.sh                    # head on this machine, daemonized
#   clusters/local/start-head.sh --num-gpus 1       # any further `ray start` flag is passed on
#
# Then add machines with clusters/local/start-worker.sh, submit sweeps with `ray job submit`
# (docs/cluster.md), and stop everything with clusters/local/stop.sh on each machine.
#
# Security defaults:
# - Token authentication stays on: RAY_AUTH_MODE=token, and a token is generated into
#   ~/.ray/auth_token unless RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) already names one. Every
#   worker node and every `ray job submit` needs the same token.
# - The dashboard and its jobs API listen on 127.0.0.1; reach them from another machine through
#   an SSH tunnel: ssh -N -L 8265:127.0.0.1:8265 HEAD_HOST
# - The GCS port (RAY_PORT) must be reachable from the worker machines: open it to them only.
set -euo pipefail

# Port of the GCS, the address worker nodes join (`ray start --address HEAD_IP:RAY_PORT`).
RAY_PORT=${RAY_PORT:-6379}
# Interface of the dashboard and jobs API; 0.0.0.0 exposes them to the network (token only).
RAY_DASHBOARD_HOST=${RAY_DASHBOARD_HOST:-127.0.0.1}
# Port of the dashboard and jobs API (`ray job submit --address http://127.0.0.1:8265`).
RAY_DASHBOARD_PORT=${RAY_DASHBOARD_PORT:-8265}

export RAY_AUTH_MODE=token
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
  # Created under umask 077, so the token is never readable by other local users, not even
  # for a moment (Ray would create it world-readable); chmod for a token made before.
  (umask 077 && mkdir -p ~/.ray && ray get-auth-token --generate >/dev/null)
  chmod 600 ~/.ray/auth_token
fi

exec ray start --head \
  --port "$RAY_PORT" \
  --dashboard-host "$RAY_DASHBOARD_HOST" \
  --dashboard-port "$RAY_DASHBOARD_PORT" \
  --include-dashboard true \
  --disable-usage-stats \
  "$@"
