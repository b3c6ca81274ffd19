#!/usr/bin/env bash
# Idempotently install, start and provision the local PostgreSQL server the SQL-source tests use:
# role `keel` (password `keel`) owning database `keel` on 127.0.0.1:5432, with TLS on: a self-signed test CA
# and a server certificate for 127.0.0.1/localhost in $KEEL_PG_TLS_DIR (default /var/lib/postgresql/keel-tls;
# ca.crt is world-readable, for clients' sslrootcert). Needs root (CI runs as root); without root it does
# nothing, and the tests skip with a reason when no server (or no TLS) is reachable.
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

tls "$version" "$name"

psql_admin() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'keel'")" != "1" ]; then
  psql_admin -c "CREATE ROLE keel LOGIN PASSWORD 'keel'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'keel'")" != "1" ]; then
  psql_admin -c "CREATE DATABASE keel OWNER keel"
fi
}

# TLS for the cluster: a test CA and a server certificate (made once), `ssl = on` in conf.d, then a reload
# (a signal: no daemon is started here). Running it again changes nothing.
tls() {
  local version="$1" name="$2" dir="${KEEL_PG_TLS_DIR:-/var/lib/postgresql/keel-tls}" made=""
  if [ ! -s "$dir/server.crt" ] || [ ! -s "$dir/server.key" ] || [ ! -s "$dir/ca.crt" ]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=keelml test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir.tmp/ca.key" -out "$dir.tmp/ca.crt"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$dir.tmp/server.key" -out "$dir.tmp/server.csr"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$dir.tmp/server.ext"
    openssl x509 -req -in "$dir.tmp/server.csr" -CA "$dir.tmp/ca.crt" -CAkey "$dir.tmp/ca.key" -CAcreateserial \
      -days 3650 -extfile "$dir.tmp/server.ext" -out "$dir.tmp/server.crt"
    rm -f "$dir.tmp/server.csr" "$dir.tmp/server.ext" "$dir.tmp/ca.srl"
    chmod 0600 "$dir.tmp/ca.key" "$dir.tmp/server.key"
    chmod 0644 "$dir.tmp/ca.crt" "$dir.tmp/server.crt"
    chmod 0755 "$dir.tmp"
    chown -R postgres:postgres "$dir.tmp"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    made=1
  fi
  local conf="/etc/postgresql/$version/$name/conf.d/keel-tls.conf"
  printf '%s\n' "# written by keelml's .ci/postgres.sh" "ssl = on" "ssl_cert_file = '$dir/server.crt'" \
    "ssl_key_file = '$dir/server.key'" "ssl_min_protocol_version = 'TLSv1.2'" >"$conf.tmp"
  mv "$conf.tmp" "$conf"
  if [ -n "$made" ] || [ "$(runuser -u postgres -- psql -p "$port" -qtA -c 'SHOW ssl')" != "on" ]; then
    pg_ctlcluster "$version" "$name" reload
    for _ in $(seq 1 30); do
      [ "$(runuser -u postgres -- psql -p "$port" -qtA -c 'SHOW ssl')" = "on" ] && break
      sleep 1
    done
  fi
}

port=""
log="$(mktemp)"
trap 'cat "$log" >&2; rm -f "$log"' EXIT
setup >"$log" 2>&1 3>&-
echo "postgresql+psycopg://keel:keel@127.0.0.1:${port}/keel" >&3
