#!/usr/bin/env bash
# Test-only PostgreSQL for the report store's tests and bench/report.py: Debian's server,
# a throw-away cluster in a directory, reachable on a unix socket in that directory only.
#
#   scripts/setup-postgres.sh install     # Debian's postgresql, if missing (root)
#   scripts/setup-postgres.sh start DIR [-c NAME=VALUE ...]
#                                         # initdb DIR/data, start, print the URI to use
#   scripts/setup-postgres.sh stop DIR    # stop the server started in DIR (by its PID)
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to the "postgres" user the
# package creates.  No TCP port is opened (listen_addresses=''), login is "trust" over the
# socket, whose directory only that user and root can enter.  When this script installs the
# package, its own "main" cluster is not created (createcluster.conf), so nothing else runs.
set -euo pipefail

log() { printf 'setup-postgres: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The newest installed server's bin directory (empty if none).
bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/postgres" ]; then echo "$d"; fi
  done | sort -V | tail -n 1
}

install() {
  [ -n "$(bindir)" ] && return 0
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed (fix: run 'make test' or this script as root)"
  mkdir -p /etc/postgresql-common
  conf=/etc/postgresql-common/createcluster.conf
  [ -e "$conf" ] || echo "create_main_cluster = false" > "$conf"
  log "installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold postgresql
}

# The command prefix that runs a program as the cluster's owner (empty: as ourselves).
as_owner=()
[ "$(id -u)" = 0 ] && as_owner=(setpriv --reuid=postgres --regid=postgres --init-groups --reset-env --)

start() {
  local dir=$1 bin
  shift
  install
  bin=$(bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  if [ ! -s "$dir/data/PG_VERSION" ]; then
    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U edrfleet -A trust -E UTF8 --locale=C.UTF-8 \
      --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  fi
  # setpriv execs the server, so $! is the server's own PID.
  "${as_owner[@]}" "$bin/postgres" -D "$dir/data" -k "$dir" -c listen_addresses= \
    -c max_connections=50 "$@" >"$dir/server.log" 2>&1 </dev/null &
  echo $! >"$dir/server.pid"
  for _ in $(seq 300); do
    if "$bin/pg_isready" -q -h "$dir" -U edrfleet -d postgres; then
      echo "postgresql://edrfleet@/postgres?host=$dir"
      return 0
    fi
    kill -0 "$(cat "$dir/server.pid")" 2>/dev/null || break
    sleep 0.1
  done
  cat "$dir/server.log" >&2
  die "the server did not start (log above)"
}

stop() {
  local dir=$1 pid
  [ -s "$dir/server.pid" ] || return 0
  pid=$(cat "$dir/server.pid")
  # SIGINT: "fast" shutdown (rolls back open transactions, no waiting for clients).
  if kill -INT "$pid" 2>/dev/null; then
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "server $pid still running"; exit 1; }
  fi
  rm -f "$dir/server.pid"
}

case "${1:-}" in
  install) install ;;
  start) [ -n "${2:-}" ] || die "usage: $0 start DIR [-c NAME=VALUE ...]"; shift; start "$@" ;;
  stop) [ -n "${2:-}" ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
