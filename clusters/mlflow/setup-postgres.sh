#!/usr/bin/env bash
# Create the PostgreSQL role and database of the MLflow tracking server, once. Idempotent.
#
# Local PostgreSQL (Debian: apt-get install postgresql; pg_ctlcluster 15 main start):
#   export MLFLOW_DB_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
#   clusters/mlflow/setup-postgres.sh          # runs psql as the `postgres` OS user
# Managed PostgreSQL (RDS, Cloud SQL): point libpq at it with an admin login first:
#   PGHOST=db.internal PGUSER=admin PGPASSWORD=... clusters/mlflow/setup-postgres.sh
#
#   MLFLOW_DB_PASSWORD  required: the password of the new role. Keep it in a password manager,
#                       a k8s Secret or ~/.pgpass; never in a committed file.
#   MLFLOW_DB_USER      role to create (default mlflow)
#   MLFLOW_DB_NAME      database to create (default mlflow)
# It prints the MLFLOW_BACKEND_STORE_URI for clusters/mlflow/start.sh (without the password).
set -euo pipefail
: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD to the password the new role gets}"
DB_USER=${MLFLOW_DB_USER:-mlflow}
DB_NAME=${MLFLOW_DB_NAME:-mlflow}

export MLFLOW_DB_PASSWORD
if [ -n "${PGHOST:-}" ]; then
  PSQL=(psql)                               # libpq's PGHOST/PGPORT/PGUSER/PGPASSWORD
elif [ "$(id -u)" = 0 ]; then
  PSQL=(runuser -u postgres -- psql)        # runuser keeps the environment
else
  PSQL=(sudo --preserve-env=MLFLOW_DB_PASSWORD -u postgres psql)
fi

# The password never appears on a command line (every local user can read those in the
# process list): psql reads it from the environment inside the session. psql variables are
# quoted by format(%I, %L): no SQL injection through the names or the password.
"${PSQL[@]}" -X -q -v ON_ERROR_STOP=1 -d postgres \
  -v db_user="$DB_USER" -v db_name="$DB_NAME" <<'SQL'
\set db_password `printenv MLFLOW_DB_PASSWORD`
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'db_user', :'db_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'db_user') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db_name', :'db_user')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db_name') \gexec
SQL

echo "MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://${DB_USER}@${PGHOST:-127.0.0.1}:${PGPORT:-5432}/${DB_NAME}"
