#!/usr/bin/env bash
# walkv against Redis 7 on this machine, in one run, with one client (redis-benchmark), over Unix sockets.
#
# For each durability mode, Redis and walkv run with matching settings:
#   always   : Redis appendonly yes, appendfsync always    | walkv --fsync always
#   everysec : Redis appendonly yes, appendfsync everysec  | walkv --fsync everysec
#   no       : Redis no persistence (no AOF, no RDB)       | walkv --fsync no
# and redis-benchmark runs SET then GET (50 clients, 100-byte values, 100k-key space) at pipeline 1
# and 16 against each server in turn, alternating which goes first, ROUNDS times; the table keeps the
# median round by ops/s. Prints a markdown table: ops/s, p50, p99 of both, walkv/Redis ops/s, and the
# lowest and highest ratio of a single round (the spread of the cell).
# Each server first gets an unmeasured warm-up, the same for both: --warmup-requests (50k) of the same
# SET and GET load (walkv's JavaScript is compiled while it runs: without one, a 200k-request pipeline-1
# run measures walkv partly cold; --warmup-requests 0 measures that). Its SETs fill part of the key
# space first (50k random keys: about 40 % of 100k), so the measured SETs overwrite more often than
# without it; the same for both servers, but runs with and without a warm-up are not strictly comparable.
#
#   scripts/bench-vs-redis.sh                      # every mode, 3 rounds (about 8 minutes)
#   scripts/bench-vs-redis.sh --modes everysec --rounds 1 --requests-p1 50000
#   scripts/bench-vs-redis.sh --walkv dist/walkv   # the compiled binary instead of Bun + source
#   scripts/bench-vs-redis.sh --modes no --floor   # adds scripts/floor-server.ts --wal (a lean server with
#                                                  # walkv's fsync-no WAL write) to the fsync-no rounds,
#                                                  # and a second table
#   scripts/bench-vs-redis.sh --cpu                # also CPU per request of each server and of
#                                                  # redis-benchmark (SET and GET then run as two
#                                                  # redis-benchmark calls), and a CPU table
set -euo pipefail
cd "$(dirname "$0")/.."

MODES="always everysec no"
ROUNDS=3
CLIENTS=50
VALUE_BYTES=100
KEYSPACE=100000
REQUESTS_P1=200000
REQUESTS_P16=2000000
WARMUP_REQUESTS=50000
WALKV=""
WALKV_ARGS=""
FLOOR=0
CPU=0

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; echo "flags: --modes \"always everysec no\" --rounds N --clients N --requests-p1 N --requests-p16 N --warmup-requests N --walkv PATH --walkv-args \"...\" --floor --cpu"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --modes) MODES="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --requests-p1) REQUESTS_P1="$2"; shift 2 ;;
    --requests-p16) REQUESTS_P16="$2"; shift 2 ;;
    --warmup-requests) WARMUP_REQUESTS="$2"; shift 2 ;;
    --walkv) WALKV="$2"; shift 2 ;;
    --walkv-args) WALKV_ARGS="$2"; shift 2 ;;
    --floor) FLOOR=1; shift ;;
    --cpu) CPU=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-vs-redis: unknown flag $1" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$ROUNDS" "$CLIENTS" "$REQUESTS_P1" "$REQUESTS_P16"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench-vs-redis: \"$n\" is not a positive integer" >&2; exit 2; }
done
[[ "$WARMUP_REQUESTS" =~ ^(0|[1-9][0-9]*)$ ]] ||
  { echo "bench-vs-redis: --warmup-requests \"$WARMUP_REQUESTS\" is not an integer ≥ 0" >&2; exit 2; }
for m in $MODES; do
  [[ "$m" =~ ^(always|everysec|no)$ ]] || { echo "bench-vs-redis: mode \"$m\" is not always|everysec|no" >&2; exit 2; }
done

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "installing Redis 7 from Debian (redis-server, redis-tools)" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi
if [ -z "$WALKV" ] || [ "$FLOOR" -eq 1 ]; then make -s install; fi
if [ -z "$WALKV" ]; then
  WALKV_CMD=(node_modules/.bin/bun src/cli/main.ts)
else
  WALKV_CMD=("$WALKV")
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/walkv-vs-redis-XXXXXX")
RESULTS="$WORK/results.csv"   # mode,server,pipeline,round,test,rps,p50,p99
CPU_RESULTS="$WORK/cpu.csv"   # mode,server,pipeline,round,test,rps,server user,server sys,client user,client sys (µs/request)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits until a line matching $2 appears in file $1 (the server's log), at most 30 s.
wait_for_line() {
  for _ in $(seq 300); do
    if grep -qiw "$2" "$1" 2>/dev/null; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "server exited:" >&2; cat "$1" >&2; exit 1; fi
    sleep 0.1
  done
  echo "server not ready after 30 s:" >&2; cat "$1" >&2; exit 1
}

start_redis() { # mode dir -> socket path on stdout
  local mode=$1 dir=$2 persistence
  case "$mode" in
    always) persistence=(--appendonly yes --appendfsync always) ;;
    everysec) persistence=(--appendonly yes --appendfsync everysec) ;;
    no) persistence=(--appendonly no) ;;
  esac
  redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --dir "$dir" --save '' \
    "${persistence[@]}" >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  wait_for_line "$dir/server.log" "ready to accept connections"
}

start_walkv() { # mode dir
  local mode=$1 dir=$2
  # shellcheck disable=SC2086 # WALKV_ARGS is a list of extra flags
  "${WALKV_CMD[@]}" serve --data "$dir/data" --socket "$dir/walkv.sock" --resp "$dir/redis.sock" \
    --fsync "$mode" $WALKV_ARGS >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  wait_for_line "$dir/server.log" "ready"
}

start_floor() { # mode dir: the reference writes a WAL record per SET before it answers (walkv's fsync no)
  node_modules/.bin/bun scripts/floor-server.ts "$2/redis.sock" --wal "$2/floor.wal" >"$2/server.log" 2>&1 &
  SERVER_PID=$!
  wait_for_line "$2/server.log" "ready"
}

stop_server() {
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}

# The server's user and system CPU so far, in clock ticks: "user sys".
server_ticks() { awk '{ print $14, $15 }' "/proc/$SERVER_PID/stat"; }

# One redis-benchmark run of TESTS (set,get or one of them), its rows appended to RESULTS; with --cpu
# (one test per run), also the CPU per request of the server (/proc: every thread) and of
# redis-benchmark (bash `times`), appended to CPU_RESULTS.
measure() { # dir pipeline requests tests "mode,server,pipeline,round"
  local dir=$1 pipeline=$2 requests=$3 tests=$4 key=$5 before="" after="" out rows
  if [ "$CPU" -eq 1 ]; then before=$(server_ticks); fi
  out=$( (redis-benchmark -s "$dir/redis.sock" -c "$CLIENTS" -n "$requests" -d "$VALUE_BYTES" -r "$KEYSPACE" \
    -P "$pipeline" -t "$tests" --csv 2>/dev/null; times) )
  if [ "$CPU" -eq 1 ]; then after=$(server_ticks); fi
  # redis-benchmark's CSV: a header, then "TEST","rps","avg","min","p50","p95","p99","max" per test.
  rows=$(grep '^"' <<<"$out" | tail -n +2 | tr -d '"')
  [ -n "$rows" ] || { echo "bench-vs-redis: redis-benchmark against $key printed no result" >&2; exit 1; }
  awk -F, -v p="$key" '{ print p "," $1 "," $2 "," $5 "," $7 }' <<<"$rows" | tee -a "$RESULTS" |
    awk -F, '{ printf "  %-8s %-6s P%-3s round %s  %s %10.0f ops/s  p50 %s ms  p99 %s ms\n", $1, $2, $3, $4, $5, $6, $7, $8 }' >&2
  [ "$CPU" -eq 1 ] || return 0
  # `times` prints the shell's user and system time, then its children's: "0m1.234s 0m5.678s".
  awk -v p="$key" -v row="$rows" -v n="$requests" -v hz="$(getconf CLK_TCK)" -v b="$before" -v a="$after" '
    function seconds(t) { split(t, m, "m"); return m[1] * 60 + m[2] }
    END {
      split(row, r, ","); split(b, x, " "); split(a, y, " ");
      printf "%s,%s,%s,%.2f,%.2f,%.2f,%.2f\n", p, r[1], r[2], (y[1] - x[1]) / hz * 1e6 / n,
        (y[2] - x[2]) / hz * 1e6 / n, seconds($1) * 1e6 / n, seconds($2) * 1e6 / n
    }' <<<"$(tail -n 1 <<<"$out")" >>"$CPU_RESULTS"
}

run_one() { # mode server pipeline round
  local mode=$1 server=$2 pipeline=$3 round=$4 dir requests
  dir="$WORK/$mode-$server-$pipeline-$round"; mkdir -p "$dir"
  requests=$REQUESTS_P1; [ "$pipeline" -gt 1 ] && requests=$REQUESTS_P16
  "start_$server" "$mode" "$dir"
  if [ "$WARMUP_REQUESTS" -gt 0 ]; then
    redis-benchmark -s "$dir/redis.sock" -c "$CLIENTS" -n "$WARMUP_REQUESTS" -d "$VALUE_BYTES" -r "$KEYSPACE" \
      -P "$pipeline" -t set,get -q >/dev/null 2>&1 || { echo "bench-vs-redis: warm-up against $server failed" >&2; exit 1; }
  fi
  if [ "$CPU" -eq 1 ]; then
    for test in set get; do measure "$dir" "$pipeline" "$requests" "$test" "$mode,$server,$pipeline,$round"; done
  else
    measure "$dir" "$pipeline" "$requests" set,get "$mode,$server,$pipeline,$round"
  fi
  stop_server
  rm -rf "$dir"
}

echo "walkv vs Redis: $(nproc) cores, $(redis-server --version | cut -d' ' -f3), walkv ${WALKV_CMD[*]}, warm-up $WARMUP_REQUESTS requests" >&2
for mode in $MODES; do
  for pipeline in 1 16; do
    for round in $(seq "$ROUNDS"); do
      if [ $((round % 2)) -eq 1 ]; then order="redis walkv"; else order="walkv redis"; fi
      if [ "$FLOOR" -eq 1 ] && [ "$mode" = no ]; then
        case $((round % 3)) in 1) order="redis walkv floor" ;; 2) order="walkv floor redis" ;; *) order="floor redis walkv" ;; esac
      fi
      for server in $order; do run_one "$mode" "$server" "$pipeline" "$round"; done
    done
  done
done

# The median round of one server in one (mode, test, pipeline) cell, by ops/s: "rps,p50,p99".
median() { # mode test pipeline server
  awk -F, -v m="$1" -v t="$2" -v p="$3" -v s="$4" \
    '$1 == m && $2 == s && $3 == p && $5 == t { print $6 "," $7 "," $8 }' "$RESULTS" |
    sort -t, -k1 -g | awk '{ rows[NR] = $0 } END { print rows[int((NR + 1) / 2)] }'
}

# The lowest and highest walkv/Redis ops/s ratio of one cell over its rounds (each round ran both
# servers, one after the other): "min–max", how far one round can move a cell.
ratio_range() { # mode test pipeline
  awk -F, -v m="$1" -v t="$2" -v p="$3" '
    $1 == m && $3 == p && $5 == t { rps[$2 "," $4] = $6; rounds[$4] = 1 }
    END {
      min = ""; max = "";
      for (r in rounds) {
        if (!(("redis," r) in rps) || !(("walkv," r) in rps) || rps["redis," r] == 0) continue;
        x = rps["walkv," r] / rps["redis," r];
        if (min == "" || x < min) min = x;
        if (max == "" || x > max) max = x;
      }
      if (min == "") print "-"; else printf "%.2f–%.2f", min, max
    }' "$RESULTS"
}

# Calls "$1 mode test pipeline" for every cell of the tables, in table order.
for_each_cell() {
  local mode test pipeline
  for mode in $MODES; do
    for test in SET GET; do
      for pipeline in 1 16; do "$1" "$mode" "$test" "$pipeline"; done
    done
  done
}

ratio_row() { # mode test pipeline
  local r w range
  r=$(median "$1" "$2" "$3" redis); w=$(median "$1" "$2" "$3" walkv)
  range=$(ratio_range "$1" "$2" "$3")
  awk -v mode="$1" -v test="$2" -v p="$3" -v r="$r" -v w="$w" -v range="$range" 'BEGIN {
    split(r, a, ","); split(w, b, ",");
    printf "| %s | %s | %s | %.0f | %s | %s | %.0f | %s | %s | %.2f | %s |\n", mode, test, p, a[1], a[2], a[3], b[1], b[2], b[3], b[1] / a[1], range
  }'
}

echo
echo "| fsync | test | pipeline | Redis ops/s | Redis p50 ms | Redis p99 ms | walkv ops/s | walkv p50 ms | walkv p99 ms | walkv/Redis | per round |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for_each_cell ratio_row

if [ "$FLOOR" -eq 1 ] && [[ " $MODES " == *" no "* ]]; then
  echo
  echo "fsync no: Redis without persistence, scripts/floor-server.ts --wal (a lean server: one thread's hash table, a WAL write(2) before it answers), walkv --fsync no"
  echo
  echo "| test | pipeline | Redis ops/s | floor ops/s | walkv ops/s | floor/Redis | walkv/Redis | walkv/floor |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for test in SET GET; do
    for pipeline in 1 16; do
      r=$(median no "$test" "$pipeline" redis); f=$(median no "$test" "$pipeline" floor); w=$(median no "$test" "$pipeline" walkv)
      awk -v test="$test" -v p="$pipeline" -v r="${r%%,*}" -v f="${f%%,*}" -v w="${w%%,*}" 'BEGIN {
        printf "| %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f |\n", test, p, r, f, w, f / r, w / r, w / f
      }'
    done
  done
fi

# The CPU table's rows of one cell, one per server that ran it: medians over the rounds, column by column.
cpu_rows() { # mode test pipeline
  local server
  for server in redis walkv floor; do
    awk -F, -v m="$1" -v t="$2" -v p="$3" -v s="$server" '
      function median(col,   n, i, j, v, tmp) {
        n = 0; for (i = 1; i <= rows; i++) v[++n] = cell[i, col];
        for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { tmp = v[j]; v[j] = v[j - 1]; v[j - 1] = tmp }
        return v[int((n + 1) / 2)]
      }
      $1 == m && $2 == s && $3 == p && $5 == t { rows++; for (c = 6; c <= 10; c++) cell[rows, c] = $c }
      END {
        if (rows == 0) exit;
        rps = median(6); su = median(7); ss = median(8); cu = median(9); cs = median(10);
        printf "| %s | %s | %s | %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", m, t, p, s, rps, su, ss, cu, cs,
          su + ss + cu + cs, rps * (su + ss + cu + cs) / 1e6
      }' "$CPU_RESULTS"
  done
}

if [ "$CPU" -eq 1 ]; then
  echo
  echo "CPU per request (µs; medians over the rounds): the server's threads together (/proc), redis-benchmark's own; cores = ops/s × (server + client)"
  echo
  echo "| fsync | test | pipeline | server | ops/s | server user | server sys | client user | client sys | server + client | cores |"
  echo "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for_each_cell cpu_rows
fi
