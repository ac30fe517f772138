#!/usr/bin/env bash
# Start the MLflow tracking server that every node of a cluster logs to: PostgreSQL as the
# backend store, artifacts proxied by the server (so nodes need no bucket credentials).
#
#   export MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow
#   export PGPASSWORD=...                      # or a ~/.pgpass line; never in the URI
#   clusters/mlflow/start.sh                   # serves http://127.0.0.1:5000 until stopped
#
# The variables (see mlflow.env.example):
#   MLFLOW_BACKEND_STORE_URI      required; made by setup-postgres.sh. SQLAlchemy 2 maps
#                                 postgresql+psycopg:// to psycopg 3 (`pip install -e '.[cluster]'`)
#   MLFLOW_ARTIFACTS_DESTINATION  where the server stores artifacts: a local directory for one
#                                 machine (default ./mlartifacts), an object store for many
#                                 (s3://bucket/mlflow, gs://bucket/mlflow; the server's own
#                                 credentials, e.g. its instance role, are used)
#   MLFLOW_HOST                   interface to listen on (default 127.0.0.1: this machine only).
#                                 On a multi-node cluster every node logs here: set the host's
#                                 private IP and let only the cluster's nodes reach the port.
#   MLFLOW_PORT                   default 5000
#   MLFLOW_WORKERS                server processes (default 2)
#   MLFLOW_SERVER_ALLOWED_HOSTS   read by MLflow itself: the Host headers it accepts (its guard
#                                 against DNS rebinding). Default: localhost and private
#                                 (RFC 1918) addresses. Set it when nodes use a host name or
#                                 another address, e.g. mlflow.default.svc:5000,127.0.0.1:*
# Any further argument is passed to `mlflow server`, e.g. --app-name basic-auth for logins.
# The server starts worker children: stop it by its process group (Ctrl-C in a terminal, or
# `kill -- -PGID`), not by its first PID only.
set -euo pipefail
: "${MLFLOW_BACKEND_STORE_URI:?set it to postgresql+psycopg://USER@HOST:5432/DB (see clusters/mlflow/mlflow.env.example)}"
case "$MLFLOW_BACKEND_STORE_URI" in
  sqlite:* | file:* | /* | ./*)
    echo "MLFLOW_BACKEND_STORE_URI: $MLFLOW_BACKEND_STORE_URI is a local file; a server shared by a cluster wants PostgreSQL" >&2
    exit 2
    ;;
esac
export MLFLOW_BACKEND_STORE_URI   # read by `mlflow server` itself: the URI is not on the command line
export MLFLOW_ARTIFACTS_DESTINATION=${MLFLOW_ARTIFACTS_DESTINATION:-$PWD/mlartifacts}

exec mlflow server \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-127.0.0.1}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-2}" \
  "$@"
