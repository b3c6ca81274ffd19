#!/usr/bin/env bash
# Idempotently install, start and provision the local PostgreSQL server the SQL-source tests use:
# role `keel` (password `keel`) owning database `keel` on 127.0.0.1:5432. Needs root (CI runs as root);
# without root it does nothing, and the tests skip with a reason when no server is reachable.
# Prints only the server's SQLAlchemy URL on stdout (everything else goes to stderr).
set -euo pipefail
# The URL goes to fd 3 (the caller's stdout). Every other command runs with fd 3 closed and stdin from
# /dev/null: the server daemon must not inherit the caller's pipe, or `$(.ci/postgres.sh)` never returns.
# Its output goes to a log that is copied to stderr at exit, so no server process holds a CI pipe open.
exec 3>&1 1>&2 </dev/null

if [ "$(id -u)" != "0" ]; then
  echo "postgres.sh: not root; skipping PostgreSQL setup (SQL tests use KEEL_TEST_POSTGRES_URL or skip)"
  exit 0
fi

setup() {

if ! command -v pg_lsclusters >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql
fi

cluster="$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2}')"
if [ -z "$cluster" ]; then
  version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
  pg_createcluster "$version" main
  cluster="$version main"
fi
read -r version name <<<"$cluster"
port="$(pg_lsclusters --no-header | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $3}')"
if ! pg_lsclusters --no-header | awk -v v="$version" -v n="$name" '$1==v && $2==n {print $4}' | grep -q online; then
  pg_ctlcluster "$version" "$name" start
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 1
done

psql_admin() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'keel'")" != "1" ]; then
  psql_admin -c "CREATE ROLE keel LOGIN PASSWORD 'keel'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'keel'")" != "1" ]; then
  psql_admin -c "CREATE DATABASE keel OWNER keel"
fi
}

port=""
log="$(mktemp)"
trap 'cat "$log" >&2; rm -f "$log"' EXIT
setup >"$log" 2>&1 3>&-
echo "postgresql+psycopg://keel:keel@127.0.0.1:${port}/keel" >&3
