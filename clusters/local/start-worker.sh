#!/usr/bin/env bash
# Join this machine to a running Ray cluster as a worker node (Ray's own `ray start --address`).
#
#   clusters/local/start-worker.sh HEAD_IP:6379                 # CPUs and GPUs auto-detected
#   clusters/local/start-worker.sh HEAD_IP:6379 --num-gpus 2    # further `ray start` flags
#
# The worker needs the head's token: copy ~/.ray/auth_token from the head to the same path
# here (scp HEAD_HOST:.ray/auth_token ~/.ray/auth_token), or export RAY_AUTH_TOKEN. Never commit
# it. It also needs the same Python environment as the head (same ray, torch and scalesweep
# versions): run ./scripts/setup.sh on it, or use the same container image.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 HEAD_IP:PORT [ray start flags...]" >&2
  exit 2
fi
HEAD_ADDRESS=$1
shift

export RAY_AUTH_MODE=token
if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ -z "${RAY_AUTH_TOKEN_PATH:-}" ] && [ ! -s ~/.ray/auth_token ]; then
  echo "no Ray token: copy ~/.ray/auth_token from the head node, or export RAY_AUTH_TOKEN" >&2
  exit 2
fi

exec ray start --address "$HEAD_ADDRESS" --disable-usage-stats "$@"
