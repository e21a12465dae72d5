#!/usr/bin/env bash
# Profiles a walkv daemon under load (`make profile`; docs/PROFILING.md explains the outputs).
#
# Starts `walkv serve` from source on a fresh temporary data directory, starts the load, lets it warm
# up, then measures three consecutive windows of --window seconds on the running daemon:
#   1. undisturbed: `perf stat` counts syscalls, CPU time and context switches (cheap counters);
#   2. strace:      `strace -c -f -p PID`, time and count per syscall (ptrace: slows the daemon);
#   3. perf:        `perf record -g -p PID`, JIT frames named from JSC's JITDump (scripts/jitdump.ts).
# Each window is bracketed by the daemon's `stats` op, so requests and ops/s are the daemon's own.
# Writes to OUT: report.txt, flame.svg, stacks.folded, perf.data, perf-PID.map, strace.txt,
# perf-stat.txt, daemon.log, load.log.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/profile.sh [options]        (make profile PROFILE_ARGS="...")

  --load CMD          the load, run with bash -c; {socket} is replaced by the daemon's msgpack
                      socket, {resp} by a RESP socket (the daemon then gets --resp), {seconds} by
                      how long the load must last. Default: walkv bench (see the next three flags)
  --connections N     default load: connections (default 50)
  --pipeline N        default load: requests in flight per connection (default 1)
  --read-ratio R      default load: share of GETs, 0..1 (default 0.5)
  --fsync MODE        always | everysec | no (default everysec)
  --serve-args ARGS   more `walkv serve` flags, e.g. "--workers 2"
  --window S          seconds of each of the three windows, 1..60 (default 5)
  --warmup S          seconds of load before the first window, 0..60 (default 5)
  --frequency HZ      perf sampling frequency, 1..10000 (default 999)
  --out DIR           output directory (default ./var/profile/<timestamp>)
  -h, --help          this text

Needs perf and strace, and permission to attach to the daemon (root, or perf_event_paranoid <= 1
and ptrace allowed). Example, RESP with redis-benchmark:
  scripts/profile.sh --load 'redis-benchmark -s {resp} -t set -r 100000 -n 100000000 -c 50 -P 16 -q'
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
bun="$root/node_modules/.bin/bun"
load=""
connections=50
pipeline=1
read_ratio=0.5
fsync=everysec
serve_args=""
window_s=5
warmup_s=5
frequency_hz=999
out=""

die() {
  echo "profile.sh: $*" >&2
  exit 2
}

# integer NAME VALUE MIN MAX: VALUE is an integer in [MIN, MAX], or the script exits 2.
integer() {
  [[ $2 =~ ^[0-9]{1,9}$ ]] && ((10#$2 >= $3 && 10#$2 <= $4)) || die "$1: an integer from $3 to $4, got '$2'"
}

while (($# > 0)); do
  case $1 in
  -h | --help) usage && exit 0 ;;
  --load | --connections | --pipeline | --read-ratio | --fsync | --serve-args | --window | --warmup | --frequency | --out)
    (($# >= 2)) || die "$1 needs a value"
    case $1 in
    --load) load=$2 ;;
    --connections) connections=$2 ;;
    --pipeline) pipeline=$2 ;;
    --read-ratio) read_ratio=$2 ;;
    --fsync) fsync=$2 ;;
    --serve-args) serve_args=$2 ;;
    --window) window_s=$2 ;;
    --warmup) warmup_s=$2 ;;
    --frequency) frequency_hz=$2 ;;
    --out) out=$2 ;;
    esac
    shift 2
    ;;
  *) usage >&2 && die "unknown argument '$1'" ;;
  esac
done

integer --connections "$connections" 1 10000
integer --pipeline "$pipeline" 1 1024
integer --window "$window_s" 1 60
integer --warmup "$warmup_s" 0 60
integer --frequency "$frequency_hz" 1 10000
[[ $read_ratio =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "--read-ratio: a number from 0 to 1, got '$read_ratio'"
[[ $fsync =~ ^(always|everysec|no)$ ]] || die "--fsync: always, everysec or no, got '$fsync'"
for tool in perf strace; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install linux-perf strace)"
done
if [[ -z $load ]]; then
  [[ -f $root/src/cli/bench.ts ]] || die "walkv bench is missing: give the load with --load"
  load="\"$bun\" \"$root/src/cli/main.ts\" bench --socket {socket} --duration {seconds}"
  load+=" --connections $connections --pipeline $pipeline --read-ratio $read_ratio"
fi
cd "$root"
out=${out:-./var/profile/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

load_average=$(cut -d' ' -f1-3 /proc/loadavg) # before we add to it: a busy machine makes figures noisy
work=$(mktemp -d "${TMPDIR:-/tmp}/walkv-profile-XXXXXX")
daemon_pid=""
load_pid=""
perf_map=""
cleanup() {
  if [[ -n $load_pid ]]; then kill -TERM -- "-$load_pid" 2>/dev/null || true; fi
  if [[ -n $daemon_pid ]]; then kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" || true; fi
  if [[ -n $perf_map ]]; then rm -f "$perf_map"; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- the daemon, with JSC writing a JITDump of every compiled function -------------------------
socket=$work/walkv.sock
resp_socket=$work/resp.sock
mkdir "$work/jit"
resp_args=()
[[ $load == *"{resp}"* ]] && resp_args=(--resp "$resp_socket")
# shellcheck disable=SC2086 # --serve-args is a list of flags
BUN_JSC_useJITDump=1 BUN_JSC_jitDumpDirectory="$work/jit" \
  "$bun" src/cli/main.ts serve --data "$work/data" --socket "$socket" --fsync "$fsync" \
  --checkpoint-interval 0 "${resp_args[@]}" $serve_args >"$out/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 300); do # the daemon prints "ready" once it accepts (recovery of an empty dir: < 1 s)
  grep -qw ready "$out/daemon.log" && break
  kill -0 "$daemon_pid" 2>/dev/null || die "the daemon exited: $(cat "$out/daemon.log")"
  sleep 0.1
done
grep -qw ready "$out/daemon.log" || die "the daemon was not ready within 30 s"

# --- the load, in its own process group (so it stops with all its children) ---------------------
load_s=$((warmup_s + 3 * window_s + 30)) # the windows, the stats calls and tool start-up; stopped after
command=${load//\{socket\}/$socket}
command=${command//\{resp\}/$resp_socket}
command=${command//\{seconds\}/$load_s}
load_label=${command//$root\//}
load_label=${load_label//$work/\$TMP}
load_label=${load_label//\"/}
setsid bash -c "$command" >"$out/load.log" 2>&1 </dev/null &
load_pid=$!
sleep "$warmup_s"

load_running() {
  kill -0 "$load_pid" 2>/dev/null || die "the load ended early: $(tail -5 "$out/load.log")"
}

# Requests completed so far, by op (the daemon's stats, without this call's own stats/ping).
requests() {
  "$bun" src/cli/main.ts stats --socket "$socket" |
    "$bun" -e 'const o = JSON.parse(await Bun.stdin.text()).ops;
      const data = ["get", "set", "del", "exists", "mget", "mset"];
      console.log(data.reduce((n, k) => n + o[k], 0), o.get, o.set);'
}

# window NAME COMMAND...: runs COMMAND (a tool that measures for --window seconds) between two stats
# calls and writes "requests gets sets ms" to $work/NAME.window, ms being the time between the two
# stats replies (each reply is taken right before its command exits: bun's start-up is not counted).
window() {
  local name=$1 before after start_ns end_ns
  shift
  load_running
  before=$(requests)
  start_ns=$(date +%s%N)
  "$@"
  after=$(requests)
  end_ns=$(date +%s%N)
  load_running
  read -r a0 a1 a2 <<<"$before"
  read -r b0 b1 b2 <<<"$after"
  echo "$((b0 - a0)) $((b1 - a1)) $((b2 - a2)) $(((end_ns - start_ns) / 1000000))" >"$work/$name.window"
}

strace_window() {
  strace -c -f -p "$daemon_pid" -o "$out/strace.txt" 2>"$work/strace.err" &
  local strace_pid=$!
  sleep "$window_s"
  kill -INT "$strace_pid"
  wait "$strace_pid" || true
}

echo "profile.sh: measuring 3 windows of ${window_s} s on daemon $daemon_pid; load: $load_label" >&2
window stat perf stat -x, -o "$out/perf-stat.txt" -e raw_syscalls:sys_enter,task-clock,context-switches \
  -p "$daemon_pid" -- sleep "$window_s"
window strace strace_window
window perf perf record -q -F "$frequency_hz" -g -p "$daemon_pid" -o "$out/perf.data" -- sleep "$window_s"

# --- JIT names: JITDump -> perf map (perf reads /tmp/perf-PID.map for anonymous code), checked
# against the live daemon's memory (so the daemon stops after this) ----------------------------------
kill -TERM -- "-$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true
load_pid=""
pid=$daemon_pid
perf_map=/tmp/perf-$pid.map
# The running image's dump is the newest: `walkv serve` restarts itself once at start, same pid
# (src/cli/allocator.ts), and the image before that left a dump too.
mapfile -t dumps < <(ls -t "$work"/jit/jit-*.dump 2>/dev/null)
((${#dumps[@]} >= 1 && ${#dumps[@]} <= 2)) || die "expected one or two JITDumps in $work/jit, found: ${dumps[*]}"
"$bun" scripts/jitdump.ts "${dumps[0]}" --live "$pid" >"$perf_map" 2>"$work/jitdump.log"
cp "$perf_map" "$out/perf-$pid.map"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || echo "profile.sh: the daemon exited with status $?" >&2
daemon_pid=""

perf script -F comm,tid,ip,sym,dso -i "$out/perf.data" 2>/dev/null |
  "$bun" scripts/flamegraph.ts fold >"$out/stacks.folded"
"$bun" scripts/flamegraph.ts svg --title "walkv daemon, fsync $fsync; load: $load_label" \
  <"$out/stacks.folded" >"$out/flame.svg"

# --- report.txt -----------------------------------------------------------------------------------
# rate NAME: "N requests (G get, S set) in T s: X ops/s" for a window.
rate() {
  local n g s ms
  read -r n g s ms <"$work/$1.window"
  awk -v n="$n" -v g="$g" -v s="$s" -v ms="$ms" \
    'BEGIN { printf "%d requests (%d get, %d set) in %.2f s: %.0f ops/s\n", n, g, s, ms / 1000, n * 1000 / ms }'
}
# in_window NAME: requests completed during the tool's own --window seconds (the rate of the stats
# interval times the window, so the tools' start and stop, outside their window, do not count).
in_window() { awk -v w="$window_s" '{ printf "%.0f\n", $1 * w * 1000 / $4 }' "$work/$1.window"; }
stat_value() { awk -F, -v e="$1" '$3 == e { print $1 }' "$out/perf-stat.txt"; }
strace_rows() { sed -n '/^------/,/^------/p' "$out/strace.txt" | grep -v '^------'; }

{
  echo "walkv profile, $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
    "bun $("$bun" --version), nproc $(nproc), load average before start $load_average"
  echo "daemon: fsync $fsync, --checkpoint-interval 0 ${serve_args}"
  echo "load:   $load_label"
  echo "windows of $window_s s after $warmup_s s of warm-up"
  echo
  echo "== 1. Undisturbed (perf stat counters) =="
  echo "load: $(rate stat)"
  n=$(in_window stat)
  syscalls=$(stat_value raw_syscalls:sys_enter)
  cpu_ms=$(stat_value task-clock)
  switches=$(stat_value context-switches)
  awk -v n="$n" -v sc="$syscalls" -v cpu="$cpu_ms" -v cs="$switches" -v w="$window_s" 'BEGIN {
    if (n == 0) { print "no requests completed"; exit }
    printf "syscalls/request:          %.2f  (%d syscalls)\n", sc / n, sc
    printf "CPU/request:               %.1f us  (daemon busy %.2f cores)\n", cpu * 1000 / n, cpu / 1000 / w
    printf "context switches/request:  %.2f\n", cs / n }'
  echo
  echo "== 2. Syscalls (strace -c -f; ptrace slows the daemon, ops/s here is not the real rate) =="
  echo "load: $(rate strace)"
  total_calls=$(awk '$NF == "total" { print $4 }' "$out/strace.txt")
  awk -v t="$total_calls" -v n="$(in_window strace)" \
    'BEGIN { if (n > 0) printf "syscalls/request under strace: %.2f  (%d syscalls)\n", t / n, t }'
  echo
  echo "top 15 by time (strace -c: kernel CPU time charged to the syscall, inflated by ptrace):"
  head -1 "$out/strace.txt"
  strace_rows | sed -n 1,15p
  echo
  echo "top 15 by count:"
  head -1 "$out/strace.txt"
  strace_rows | sort -k4,4nr | sed -n 1,15p
  echo
  echo "== 3. CPU profile (perf record -g -F $frequency_hz) =="
  echo "load: $(rate perf)"
  echo "JIT names: $(cat "$work/jitdump.log")"
  echo
  echo "samples by thread and object (JIT = JavaScript; bun.exe = runtime, interpreter, GC):"
  perf report -i "$out/perf.data" --no-children --sort comm,dso --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed -n 1,20p
  echo
  echo "top 25 symbols by self time:"
  perf report -i "$out/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed -n 1,25p
} >"$out/report.txt"

echo "profile.sh: wrote $out (report.txt, flame.svg)" >&2
cat "$out/report.txt"
