#!/usr/bin/env bash
# Loopback-only service helpers for the multi-replica tests (no Docker).
# Every service keeps its files, pid file and logs under the DIR it is given.
# On success every subcommand prints exactly one line on stdout (start,
# restart, reload, readonly and writable print the service URL); progress
# and errors go to stderr, and a failure exits non-zero.
#
#   pg start PORT DIR      PostgreSQL (newest /usr/lib/postgresql/*/bin),
#                          initdb into DIR/data on first use; listens on
#                          127.0.0.1:PORT only (unix socket in DIR/sock),
#                          trust auth for 127.0.0.1 and the socket, fsync on.
#                          Creates role `nboost` (LOGIN CREATEDB) and database
#                          `nboost` it owns. Runs as the `postgres` system user
#                          (or `nboost-pg`, created if missing) when invoked as
#                          root. Already running: just prints the URL. After a
#                          crash it removes a stale postmaster.pid and lets
#                          PostgreSQL recover from the WAL.
#                          Prints postgres://nboost@127.0.0.1:PORT/nboost
#   pg stop DIR            fast shutdown; prints "stopped pg DIR"
#   pg restart DIR         stop + start on the same port; prints the URL
#   pg kill DIR            SIGKILL the postmaster and its children at once
#                          (a crash, no shutdown checkpoint); prints "killed pg DIR"
#
#   s3 install             build s3s-fs (pinned below) into .tools/s3s-fs
#                          unless it is there; prints the binary's path
#   s3 start PORT DIR      s3s-fs on 127.0.0.1:PORT serving DIR/root, access
#                          key nboost-test / secret nboost-test-secret, region
#                          any (use us-east-1), path-style; bucket `nboost`.
#                          Prints http://127.0.0.1:PORT
#   s3 stop DIR            SIGINT (graceful), SIGKILL after 12 s; prints "stopped s3 DIR"
#   s3 readonly DIR        chmod -R a-w DIR/root while it runs: reads still
#                          work, writes (PUT, DELETE, multipart) get HTTP 500.
#                          When invoked as root the server runs as root with
#                          every capability dropped (setpriv), so file modes
#                          bind it. Prints the URL.
#   s3 writable DIR        undo readonly (chmod -R u+w); prints the URL
#
#   nginx start PORT DIR UPSTREAM...
#                          nginx on 127.0.0.1:PORT proxying to the
#                          host:port UPSTREAMs (least_conn, retry on
#                          error/timeout/502/503 for any method, 3 tries,
#                          request bodies buffered so uploads are retryable).
#                          DIR/nginx.conf is regenerated; logs in DIR
#                          (access.log records $upstream_addr). Prints
#                          http://127.0.0.1:PORT
#   nginx stop DIR         fast stop; prints "stopped nginx DIR"
#   nginx reload DIR UPSTREAM...
#                          rewrite the upstream list and reload (graceful);
#                          returns once new workers run; prints the URL
#
#   stop-all DIR           stop every service started under DIR (at any
#                          depth; found by their .nboost-service markers);
#                          prints "stopped N services"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
S3S_FS_VERSION=0.14.1 # newest s3s-fs whose rust-version (1.92) our rustc 1.95 meets
S3S_FS_DIR="$ROOT/.tools/s3s-fs"
S3S_FS_BIN="$S3S_FS_DIR/bin/s3s-fs"
S3_ACCESS_KEY=nboost-test
S3_SECRET_KEY=nboost-test-secret

die() { echo "services.sh: $*" >&2; exit 1; }
log() { echo "services.sh: $*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }
abspath() { mkdir -p "$1" && (cd "$1" && pwd); }
need_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ] && [ "$1" -lt 65536 ] || die "bad port: $1"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive PID NAME: PID runs (a zombie does not: some inits reap late) and
# its command name is NAME.
alive() {
  local pid=$1 name=$2 comm
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = "$name" ] || return 1
  [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]
}

# wait_gone PID SECONDS
wait_gone() {
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    # a zombie counts as gone
    [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" = Z ] && return 0
    sleep 0.1
  done
  return 1
}

mark() { echo "$1" >"$2/.nboost-service"; }

# ---------------------------------------------------------------- postgres

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] && [ -x "$d/pg_ctl" ] || die "no PostgreSQL server in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
  echo "$d"
}

pg_user() {
  if ! is_root; then id -un; return; fi
  if id -u postgres >/dev/null 2>&1; then echo postgres; return; fi
  id -u nboost-pg >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nboost-pg >&2
  echo nboost-pg
}

# as_pg DIR CMD...: run CMD as the PostgreSQL user, from DIR.
as_pg() {
  local dir=$1; shift
  if is_root; then
    (cd "$dir" && runuser -u "$PGUSER_OS" -- "$@")
  else
    (cd "$dir" && "$@")
  fi
}

pg_url() { echo "postgres://nboost@127.0.0.1:$1/nboost"; }

# Not `pg_ctl status`: it takes a zombie postmaster for a running one.
pg_running() { alive "$(head -n1 "$1/data/postmaster.pid" 2>/dev/null)" postgres; }

pg_port_of() { cat "$1/port" 2>/dev/null || die "$1 has no PostgreSQL port file (never started?)"; }

# The user must be able to reach DIR: give search (x, not read) permission on
# ancestors that deny it (tempfile's 0700 directories, for instance).
pg_open_path() {
  local p=$1
  while [ "$p" != / ]; do
    if ! runuser -u "$PGUSER_OS" -- test -x "$p" 2>/dev/null; then
      chmod o+x "$p"
    fi
    p=$(dirname "$p")
  done
}

pg_start() {
  local port=$1 dir=$2 data pid
  need_port "$port"
  dir=$(abspath "$dir")
  data=$dir/data
  if pg_running "$dir"; then
    local running; running=$(pg_port_of "$dir")
    [ "$running" = "$port" ] || log "PostgreSQL in $dir already runs on port $running (not $port)"
    pg_url "$running"; return
  fi
  mark pg "$dir"
  if is_root; then
    chown "$PGUSER_OS:" "$dir"
    pg_open_path "$dir"
  fi
  mkdir -p "$dir/sock"
  is_root && chown "$PGUSER_OS:" "$dir/sock"
  chmod 0700 "$dir/sock"
  touch "$dir/postgres.log"
  is_root && chown "$PGUSER_OS:" "$dir/postgres.log"

  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    as_pg "$dir" "$PGBIN/initdb" -D "$data" --username=postgres --auth-local=trust --auth-host=trust \
      --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
      { tail -n 20 "$dir/initdb.log" >&2; die "initdb failed (log: $dir/initdb.log)"; }
    cat >"$data/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
EOF
    echo "include 'nboost.conf'" >>"$data/postgresql.conf"
    is_root && chown "$PGUSER_OS:" "$data/pg_hba.conf" "$data/postgresql.conf"
  fi
  cat >"$data/nboost.conf" <<EOF
# written by scripts/services.sh on every start
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
logging_collector = off
EOF
  is_root && chown "$PGUSER_OS:" "$data/nboost.conf"
  echo "$port" >"$dir/port"

  # After a SIGKILL: a postmaster.pid whose process is gone is stale.
  if [ -f "$data/postmaster.pid" ]; then
    pid=$(head -n1 "$data/postmaster.pid")
    if ! alive "$pid" postgres; then
      log "removing stale $data/postmaster.pid (pid $pid is gone)"
      rm -f "$data/postmaster.pid"
    fi
  fi
  # Likewise the socket lock files (the postmaster is not running here).
  rm -f "$dir/sock"/.s.PGSQL.*

  as_pg "$dir" "$PGBIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 120 start >/dev/null ||
    { tail -n 20 "$dir/postgres.log" >&2; die "PostgreSQL did not start (log: $dir/postgres.log)"; }
  local i
  for ((i = 0; i < 600; i++)); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break
    sleep 0.1
  done
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres ||
    { tail -n 20 "$dir/postgres.log" >&2; die "PostgreSQL does not accept connections on 127.0.0.1:$port"; }

  local psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir/sock" -p "$port" -U postgres -d postgres -tA)
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'nboost'")" != 1 ]; then
    "${psql[@]}" -c "CREATE ROLE nboost LOGIN CREATEDB" >/dev/null
  fi
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'nboost'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE nboost OWNER nboost" >/dev/null
  fi
  pg_url "$port"
}

pg_stop() {
  local dir; dir=$(abspath "$1")
  if pg_running "$dir"; then
    as_pg "$dir" "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null ||
      die "PostgreSQL in $dir did not stop"
  fi
  echo "stopped pg $dir"
}

pg_kill() {
  local dir pid kids; dir=$(abspath "$1")
  pid=$(head -n1 "$dir/data/postmaster.pid" 2>/dev/null || true)
  if alive "$pid" postgres; then
    # Children first in the list, but one kill(1): none gets to exit cleanly.
    kids=$(pgrep -P "$pid" || true)
    # shellcheck disable=SC2086
    kill -KILL "$pid" $kids 2>/dev/null || true
    wait_gone "$pid" 10 || die "postmaster $pid survived SIGKILL"
    for k in $kids; do wait_gone "$k" 10 || true; done
  fi
  echo "killed pg $dir"
}

pg_main() {
  PGBIN=$(pg_bin)
  PGUSER_OS=$(pg_user)
  case "${1:-}" in
    start) [ $# = 3 ] || die "usage: pg start PORT DIR"; pg_start "$2" "$3" ;;
    stop) [ $# = 2 ] || die "usage: pg stop DIR"; pg_stop "$2" ;;
    restart)
      [ $# = 2 ] || die "usage: pg restart DIR"
      local port; port=$(pg_port_of "$2")
      pg_stop "$2" >/dev/null
      pg_start "$port" "$2" ;;
    kill) [ $# = 2 ] || die "usage: pg kill DIR"; pg_kill "$2" ;;
    *) die "usage: pg start PORT DIR | stop DIR | restart DIR | kill DIR" ;;
  esac
}

# ---------------------------------------------------------------------- s3

s3_install() {
  mkdir -p "$ROOT/.tools"
  # One build at a time, however many callers.
  exec 9>"$ROOT/.tools/s3s-fs.lock"
  flock 9
  if [ ! -x "$S3S_FS_BIN" ] || ! "$S3S_FS_BIN" --version 2>/dev/null | grep -q " $S3S_FS_VERSION\$"; then
    log "building s3s-fs $S3S_FS_VERSION into $S3S_FS_DIR (a few minutes)"
    # Own target directory: never shares (or waits on) the workspace's.
    local build="$ROOT/.tools/s3s-fs-build"
    mkdir -p "$build"
    (cd "$build" && CARGO_TARGET_DIR="$build/target" cargo install "s3s-fs@$S3S_FS_VERSION" \
      --features binary --locked --root "$S3S_FS_DIR" --force >"$build/install.log" 2>&1) ||
      { tail -n 30 "$build/install.log" >&2; die "cargo install s3s-fs failed (log: $build/install.log)"; }
    rm -rf "$build/target"
  fi
  exec 9>&- # a server started next must not inherit the lock
  echo "$S3S_FS_BIN"
}

s3_url() { echo "http://127.0.0.1:$1"; }

s3_pid() { cat "$1/s3s-fs.pid" 2>/dev/null || true; }

s3_start() {
  local port=$1 dir=$2 pid
  need_port "$port"
  dir=$(abspath "$dir")
  pid=$(s3_pid "$dir")
  if alive "$pid" s3s-fs; then
    local running; running=$(cat "$dir/port")
    [ "$running" = "$port" ] || log "s3s-fs in $dir already runs on port $running (not $port)"
    s3_url "$running"; return
  fi
  [ -x "$S3S_FS_BIN" ] || s3_install >/dev/null
  mark s3 "$dir"
  mkdir -p "$dir/root/nboost" # a directory under the root is a bucket
  echo "$port" >"$dir/port"
  port_open "$port" && die "127.0.0.1:$port is already in use"
  # As root, drop every capability so that file modes (s3 readonly) bind it.
  local drop=()
  if is_root && setpriv --bounding-set=-all --inh-caps=-all true 2>/dev/null; then
    drop=(setpriv --bounding-set=-all --inh-caps=-all --)
  fi
  RUST_LOG="${RUST_LOG:-info}" setsid "${drop[@]}" "$S3S_FS_BIN" --host 127.0.0.1 --port "$port" \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$dir/root" \
    >>"$dir/s3s-fs.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/s3s-fs.pid"
  local i
  for ((i = 0; i < 300; i++)); do
    port_open "$port" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  port_open "$port" && alive "$pid" s3s-fs ||
    { tail -n 20 "$dir/s3s-fs.log" >&2; die "s3s-fs did not start on 127.0.0.1:$port (log: $dir/s3s-fs.log)"; }
  s3_url "$port"
}

s3_stop() {
  local dir pid; dir=$(abspath "$1")
  pid=$(s3_pid "$dir")
  if alive "$pid" s3s-fs; then
    kill -INT "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 12; then
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 5 || die "s3s-fs $pid survived SIGKILL"
    fi
  fi
  rm -f "$dir/s3s-fs.pid"
  echo "stopped s3 $dir"
}

s3_mode() {
  local mode=$1 dir; dir=$(abspath "$2")
  [ -d "$dir/root" ] || die "$dir/root does not exist"
  if is_root && ! grep -q '^CapEff:[[:space:]]*0*$' "/proc/$(s3_pid "$dir")/status" 2>/dev/null; then
    log "warning: s3s-fs in $dir keeps its capabilities; file modes do not bind it"
  fi
  if [ "$mode" = readonly ]; then chmod -R a-w "$dir/root"; else chmod -R u+w "$dir/root"; fi
  s3_url "$(cat "$dir/port")"
}

s3_main() {
  case "${1:-}" in
    install) [ $# = 1 ] || die "usage: s3 install"; s3_install ;;
    start) [ $# = 3 ] || die "usage: s3 start PORT DIR"; s3_start "$2" "$3" ;;
    stop) [ $# = 2 ] || die "usage: s3 stop DIR"; s3_stop "$2" ;;
    readonly | writable) [ $# = 2 ] || die "usage: s3 $1 DIR"; s3_mode "$1" "$2" ;;
    *) die "usage: s3 install | start PORT DIR | stop DIR | readonly DIR | writable DIR" ;;
  esac
}

# ------------------------------------------------------------------- nginx

nginx_bin() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || die "nginx is not installed (apt-get install nginx)"; }

nginx_url() { echo "http://127.0.0.1:$1"; }

nginx_pid() { cat "$1/nginx.pid" 2>/dev/null || true; }

nginx_write_conf() {
  local port=$1 dir=$2; shift 2
  [ $# -gt 0 ] || die "at least one UPSTREAM (host:port) is needed"
  local servers="" u re='^[][A-Za-z0-9.:-]+:[0-9]+$'
  for u in "$@"; do
    [[ "$u" =~ $re ]] || die "bad upstream (want host:port): $u"
    servers+="    server $u max_fails=1 fail_timeout=2s;"$'\n'
  done
  local user=""
  is_root && user="user $(id -un) $(id -gn);"
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf.new" <<EOF
# written by scripts/services.sh; regenerated on start and reload
$user
daemon on;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_shutdown_timeout 5s;

events {
  worker_connections 1024;
}

http {
  default_type application/octet-stream;
  log_format upstream '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent '
                      'upstream=\$upstream_addr upstream_status=\$upstream_status '
                      'request_time=\$request_time';
  access_log $dir/access.log upstream;

  client_body_temp_path $dir/tmp/client_body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;

  upstream nboost {
    zone nboost 64k;
    least_conn;
$servers    keepalive 32;
  }

  server {
    listen 127.0.0.1:$port;
    server_name _;

    # Bodies are buffered (proxy_request_buffering stays on) so that a
    # request, uploads included, can be replayed on another replica.
    client_max_body_size 512m;
    client_body_buffer_size 1m;

    location / {
      proxy_pass http://nboost;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 2s;
      proxy_send_timeout 60s;
      proxy_read_timeout 60s;
    }
  }
}
EOF
  "$NGINX" -q -t -c "$dir/nginx.conf.new" -p "$dir" -e "$dir/error.log" 2>"$dir/nginx-t.log" ||
    { cat "$dir/nginx-t.log" >&2; die "generated nginx config does not pass nginx -t"; }
  mv "$dir/nginx.conf.new" "$dir/nginx.conf"
}

nginx_start() {
  local port=$1 dir=$2 pid; shift 2
  need_port "$port"
  dir=$(abspath "$dir")
  pid=$(nginx_pid "$dir")
  if alive "$pid" nginx; then
    local running; running=$(cat "$dir/port")
    [ "$running" = "$port" ] || log "nginx in $dir already runs on port $running (not $port)"
    nginx_url "$running"; return
  fi
  mark nginx "$dir"
  port_open "$port" && die "127.0.0.1:$port is already in use"
  nginx_write_conf "$port" "$dir" "$@"
  echo "$port" >"$dir/port"
  "$NGINX" -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" 2>>"$dir/error.log" ||
    { tail -n 20 "$dir/error.log" >&2; die "nginx did not start (log: $dir/error.log)"; }
  local i
  for ((i = 0; i < 100; i++)); do
    port_open "$port" && break
    sleep 0.1
  done
  port_open "$port" || { tail -n 20 "$dir/error.log" >&2; die "nginx does not answer on 127.0.0.1:$port"; }
  nginx_url "$port"
}

nginx_stop() {
  local dir pid; dir=$(abspath "$1")
  pid=$(nginx_pid "$dir")
  if alive "$pid" nginx; then
    kill -TERM "$pid" 2>/dev/null || true # fast shutdown, same as nginx -s stop
    if ! wait_gone "$pid" 10; then
      kill -KILL "$pid" $(pgrep -P "$pid" || true) 2>/dev/null || true
      wait_gone "$pid" 5 || die "nginx $pid survived SIGKILL"
    fi
  fi
  echo "stopped nginx $dir"
}

nginx_reload() {
  local dir pid port old new; dir=$(abspath "$1"); shift
  pid=$(nginx_pid "$dir")
  alive "$pid" nginx || die "nginx is not running in $dir"
  port=$(cat "$dir/port")
  old=$(pgrep -P "$pid" | sort || true)
  nginx_write_conf "$port" "$dir" "$@"
  kill -HUP "$pid" # same as nginx -s reload
  # Done when a worker that was not there before runs (old ones have then
  # been told to close their listeners).
  local i
  for ((i = 0; i < 100; i++)); do
    new=$(pgrep -P "$pid" | sort || true)
    [ -n "$(comm -13 <(echo "$old") <(echo "$new"))" ] && break
    sleep 0.1
  done
  [ -n "$(comm -13 <(echo "$old") <(echo "$new"))" ] ||
    { tail -n 20 "$dir/error.log" >&2; die "nginx did not reload"; }
  nginx_url "$port"
}

nginx_main() {
  NGINX=$(nginx_bin)
  case "${1:-}" in
    start) [ $# -ge 4 ] || die "usage: nginx start PORT DIR UPSTREAM..."; nginx_start "${@:2}" ;;
    stop) [ $# = 2 ] || die "usage: nginx stop DIR"; nginx_stop "$2" ;;
    reload) [ $# -ge 3 ] || die "usage: nginx reload DIR UPSTREAM..."; nginx_reload "${@:2}" ;;
    *) die "usage: nginx start PORT DIR UPSTREAM... | stop DIR | reload DIR UPSTREAM..." ;;
  esac
}

# ---------------------------------------------------------------- stop-all

stop_all() {
  local top n=0 marker dir kind failed=0
  [ -d "$1" ] || { echo "stopped 0 services"; return; }
  top=$(abspath "$1")
  while IFS= read -r -d '' marker; do
    dir=$(dirname "$marker")
    kind=$(cat "$marker")
    case "$kind" in
      pg) (pg_main stop "$dir") >/dev/null || failed=1 ;;
      s3) (s3_main stop "$dir") >/dev/null || failed=1 ;;
      nginx) (nginx_main stop "$dir") >/dev/null || failed=1 ;;
      *) continue ;;
    esac
    n=$((n + 1))
  done < <(find "$top" -name .nboost-service -type f -print0 2>/dev/null)
  [ "$failed" = 0 ] || die "some services under $top did not stop"
  echo "stopped $n services"
}

case "${1:-}" in
  pg) shift; pg_main "$@" ;;
  s3) shift; s3_main "$@" ;;
  nginx) shift; nginx_main "$@" ;;
  stop-all) [ $# = 2 ] || die "usage: stop-all DIR"; stop_all "$2" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
