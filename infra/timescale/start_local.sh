#!/usr/bin/env bash
# Start a real TimescaleDB server for candleflow's tests and prints its DSN on the last line.
#
# Order of preference:
#   1. CANDLEFLOW_TIMESCALE_DSN is already set: nothing to start, print it.
#   2. A working Docker engine: run the official image timescale/timescaledb:latest-pg17.
#   3. Root on Debian: build (once, cached) a minimal Debian trixie chroot holding
#      postgresql-17-timescaledb (Apache edition) with debootstrap and run that postgres
#      on 127.0.0.1.
# Anything else is an error that says what to do.
#
# Usage: start_local.sh [start|stop|kill]   (default start)
#   stop: a fast shutdown of the chroot server on CANDLEFLOW_TSDB_PORT; kill: an immediate one
#   (no checkpoint, what a crash looks like). Both only for the chroot server.
# CANDLEFLOW_TSDB_PORT (default 55432) and CANDLEFLOW_TSDB_PGDATA (the data directory inside
# the chroot, default /var/lib/candleflow-pg) let a second, private server run beside the
# shared one (the store-outage test starts, kills and restarts its own).
set -euo pipefail

ACTION="${1:-start}"
PORT="${CANDLEFLOW_TSDB_PORT:-55432}"
ROOT="${CANDLEFLOW_TSDB_ROOT:-/var/cache/candleflow/tsdb-trixie}"
PGDATA_IN_ROOT="${CANDLEFLOW_TSDB_PGDATA:-/var/lib/candleflow-pg}"
MIRROR="${CANDLEFLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The password of the local server is random, made once per data directory and kept beside it
# (mode 600): a fixed, published one would be a secret that is none, and one equal to a common
# word would make the log redactor blank that word out of every line.
dsn_for() { echo "postgresql://candleflow:$1@127.0.0.1:${PORT}/candleflow"; }
password_in() {  # password_in FILE: the password kept in FILE, made on first use
  if [[ ! -s "$1" ]]; then
    mkdir -p "$(dirname "$1")"
    (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1")
  fi
  cat "$1"
}

log() { echo "[timescale] $*" >&2; }

case "${ACTION}" in
  start|stop|kill) ;;
  *) log "unknown action ${ACTION}; use start, stop or kill"; exit 2 ;;
esac

if [[ "${ACTION}" == "start" && -n "${CANDLEFLOW_TIMESCALE_DSN:-}" ]]; then
  log "using the server given in CANDLEFLOW_TIMESCALE_DSN"
  echo "${CANDLEFLOW_TIMESCALE_DSN}"
  exit 0
fi

wait_ready() {
  for _ in $(seq 1 60); do
    if pg_isready_cmd >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  log "server on 127.0.0.1:${PORT} did not become ready in 60 s"
  return 1
}

if [[ "${ACTION}" == "start" ]] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  PW="$(password_in "${XDG_CACHE_HOME:-${HOME}/.cache}/candleflow/tsdb-docker-${PORT}.password")"
  pg_isready_cmd() { docker exec candleflow-tsdb pg_isready -U candleflow -d candleflow; }
  if ! docker ps --format '{{.Names}}' | grep -qx candleflow-tsdb; then
    log "starting the official image timescale/timescaledb:latest-pg17 on 127.0.0.1:${PORT}"
    docker rm -f candleflow-tsdb >/dev/null 2>&1 || true
    docker run -d --name candleflow-tsdb -p "127.0.0.1:${PORT}:5432" \
      -e POSTGRES_USER=candleflow -e POSTGRES_PASSWORD="${PW}" -e POSTGRES_DB=candleflow \
      timescale/timescaledb:latest-pg17 >/dev/null
  fi
  wait_ready
  docker exec candleflow-tsdb psql -qAt -U candleflow -d candleflow \
    -c "alter role candleflow password '${PW}'" >/dev/null
  dsn_for "${PW}"
  exit 0
fi

if [[ "$(id -u)" != "0" ]]; then
  log "no Docker engine and not root: set CANDLEFLOW_TIMESCALE_DSN to a TimescaleDB server"
  exit 2
fi

if [[ ! -x "${ROOT}/usr/lib/postgresql/17/bin/postgres" ]]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap) >&2
  fi
  log "building a Debian trixie chroot with postgresql-17-timescaledb in ${ROOT} (about a minute)"
  rm -rf "${ROOT}.tmp"
  mkdir -p "$(dirname "${ROOT}")"
  debootstrap --variant=minbase --include=postgresql-17-timescaledb trixie "${ROOT}.tmp" "${MIRROR}" >&2
  rm -rf "${ROOT}"
  mv "${ROOT}.tmp" "${ROOT}"
fi

in_root() { chroot "${ROOT}" /usr/bin/env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"; }
as_pg() { in_root /usr/sbin/runuser -u postgres -- "$@"; }
pg_isready_cmd() { in_root /usr/lib/postgresql/17/bin/pg_isready -h 127.0.0.1 -p "${PORT}"; }
BIN=/usr/lib/postgresql/17/bin

if [[ "${ACTION}" != "start" ]]; then
  mode=fast
  [[ "${ACTION}" == "kill" ]] && mode=immediate
  log "stopping (${mode}) the server of ${PGDATA_IN_ROOT} on 127.0.0.1:${PORT}"
  as_pg "${BIN}/pg_ctl" -D "${PGDATA_IN_ROOT}" -m "${mode}" -w stop >&2
  exit 0
fi

start_cluster() {
if [[ ! -f "${ROOT}${PGDATA_IN_ROOT}/PG_VERSION" ]]; then
  log "initialising a cluster"
  mkdir -p "${ROOT}${PGDATA_IN_ROOT}"
  in_root chown postgres:postgres "${PGDATA_IN_ROOT}"
  password_in "${ROOT}${PGDATA_IN_ROOT}.superuser" > "${ROOT}/tmp/pwfile"
  in_root chown postgres "/tmp/pwfile"
  as_pg "${BIN}/initdb" -D "${PGDATA_IN_ROOT}" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile=/tmp/pwfile -E UTF8 >&2
  rm -f "${ROOT}/tmp/pwfile"
  cat >> "${ROOT}${PGDATA_IN_ROOT}/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = ${PORT}
shared_preload_libraries = 'timescaledb'
dynamic_shared_memory_type = mmap
unix_socket_directories = '/tmp'
timescaledb.telemetry_level = off
max_connections = 100
fsync = on
CONF
fi

mkdir -p "${ROOT}/tmp"
chmod 1777 "${ROOT}/tmp"
log "starting postgres 17 + timescaledb on 127.0.0.1:${PORT}"
as_pg "${BIN}/pg_ctl" -D "${PGDATA_IN_ROOT}" -l "${PGDATA_IN_ROOT}/server.log" -w start >&2
wait_ready
}

PW="$(password_in "${ROOT}${PGDATA_IN_ROOT}.password")"
if pg_isready_cmd >/dev/null 2>&1; then
  log "a server is already answering on 127.0.0.1:${PORT}"
else
  start_cluster
fi

psql_root() { as_pg "${BIN}/../bin/psql" -h /tmp -p "${PORT}" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
if [[ "$(psql_root -c "select 1 from pg_roles where rolname='candleflow'")" != "1" ]]; then
  psql_root -c "create role candleflow login" >&2
fi
psql_root -c "alter role candleflow password '${PW}'" >&2
if [[ "$(psql_root -c "select 1 from pg_database where datname='candleflow'")" != "1" ]]; then
  psql_root -c "create database candleflow owner candleflow" >&2
fi
psql_root -d candleflow -c "create extension if not exists timescaledb" >&2
log "ready: $(psql_root -d candleflow -c "select 'timescaledb ' || extversion from pg_extension where extname='timescaledb'") license=$(psql_root -d candleflow -c 'show timescaledb.license')"
dsn_for "${PW}"
