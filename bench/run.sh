#!/usr/bin/env bash
# bench/run.sh: load benchmark of the gateway side by side with nginx doing the
# same job (bench/nginx.conf), and with a bare Echo handler (bench/floor) as the
# upper bound. Everything listens on 127.0.0.1 only.
#
#   bash bench/run.sh            # full run, a few minutes
#   QUICK=1 bash bench/run.sh    # short run (one round of 3 s runs, 50,000-id flood)
#
# Knobs (environment): UPSTREAM_DELAY (5ms), DURATION (6s), ROUNDS (5; the
# servers take turns this many times and the best round counts), CONNECTIONS (64),
# LATENCY_CONNECTIONS (4, for the added-latency runs), STAMPEDE_N (200),
# STAMPEDE_DELAY (100ms), FLOOD_IDS (1000000), FLOOD_DELAY (0s),
# GATEWAY_CACHE_MAX_ENTRIES (100000), PROFILE (1: CPU and allocation profiles
# of the gateway under the hot and cold loads), SERVER_CPU (0), LOAD_CPU (1), NICE (0; e.g. -5 to be less
# disturbed by other work on the machine), WORK_PARENT (/dev/shm if there,
# else /tmp: where the work dir goes), WAIT_QUIET (0; seconds to wait at
# most for the load average to fall below 1), NGINX_EXTRA (directives added
# to nginx's http block), RESULTS_DIR (a new temp dir),
# GATEWAY_BIN (a prebuilt gateway binary instead of `go build .`),
# GATEWAY_EXTRA_ENV (more VAR=value words for the gateway, e.g. GOGC=400).
#
# The servers (gateway, nginx, floor) run on SERVER_CPU with one core's worth of threads each (GOMAXPROCS=1,
# worker_processes 1) and are measured one at a time, taking turns; the idle
# ones cost nothing. wrk, the fake upstream behind the proxies and the
# stampede and flood clients share LOAD_CPU. The figures are printed as a
# markdown table and kept with the raw outputs in RESULTS_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	DURATION=${DURATION:-3s}
	FLOOD_IDS=${FLOOD_IDS:-50000}
fi
UPSTREAM_DELAY=${UPSTREAM_DELAY:-5ms}
DURATION=${DURATION:-6s}
CONNECTIONS=${CONNECTIONS:-64}
LATENCY_CONNECTIONS=${LATENCY_CONNECTIONS:-4}
HOT_IDS=1000
STAMPEDE_N=${STAMPEDE_N:-200}
STAMPEDE_DELAY=${STAMPEDE_DELAY:-100ms}
FLOOD_IDS=${FLOOD_IDS:-1000000}
FLOOD_DELAY=${FLOOD_DELAY:-0s}
CACHE_MAX_ENTRIES=${GATEWAY_CACHE_MAX_ENTRIES:-100000}
FLOOD_BYTES_PER_ENTRY=1024 # RSS budget per cached id on top of the RSS with the 1,000 hot ids cached
PROFILE=${PROFILE:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NICE=${NICE:-0}
WAIT_QUIET=${WAIT_QUIET:-0}
[[ $QUICK == 1 ]] && ROUNDS=${ROUNDS:-1}
ROUNDS=${ROUNDS:-5}
NGINX_EXTRA=${NGINX_EXTRA:-} # extra nginx http-level directives, e.g. "open_file_cache max=2000;"
API_KEY=bench-key-not-a-secret
ACCOUNT_ID=bench-account
RUN_ID=$(date +%s)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
PATH=$PATH:/usr/sbin:/sbin
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt_get() { apt-get -o DPkg::Lock::Timeout=300 -y -q "$@"; }
	apt_get update >/dev/null
	for m in "${missing[@]}"; do
		case $m in
		nginx) apt_get install nginx-light >/dev/null || apt_get install nginx >/dev/null ;;
		wrk) apt_get install wrk >/dev/null ;;
		esac
	done
fi
for c in nginx wrk taskset curl ss go; do
	command -v "$c" >/dev/null || die "$c is required"
done

# ---------------------------------------------------------------- processes
# The work dir (binaries, logs, nginx's cache) is in memory when /dev/shm is
# there: the gateway's cache is in memory too, and a disk shared with other
# work makes file writes stall unpredictably.
if [[ -z ${WORK_PARENT:-} ]]; then
	WORK_PARENT=/tmp
	[[ -d /dev/shm && -w /dev/shm ]] && WORK_PARENT=/dev/shm
fi
WORK=$(mktemp -d "$WORK_PARENT/bluetape-bench.XXXXXX")
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/bluetape-bench-results.XXXXXX)}
mkdir -p "$RESULTS_DIR" "$WORK/bin"
PIDS=()

stop_pid() { # pid: SIGTERM, then SIGKILL after 10 s
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}"
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# pin CPU CMD...: runs CMD on CPU only, at niceness NICE.
pin() {
	local cpu=$1
	shift
	nice -n "$NICE" taskset -c "$cpu" "$@"
}

# start NAME CPU CMD...: runs CMD pinned to CPU, logs to $WORK/NAME.log, sets PID.
start() {
	local name=$1 cpu=$2
	shift 2
	nice -n "$NICE" taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
	PID=$!
	PIDS+=("$PID")
}

USED_PORTS=" "
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if [[ -z $(ss -Htln "sport = :$p") ]]; then
			USED_PORTS+="$p "
			echo "$p"
			return
		fi
	done
}

wait_http() { # url [want status]: poll up to 15 s
	local url=$1 want=${2:-200} i code
	for ((i = 0; i < 150; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
		[[ $code == "$want" ]] && return 0
		sleep 0.1
	done
	die "$url did not answer $want (last: $code)"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }
sum_rss_kb() { local p; for p in "$@"; do rss_kb "$p"; done | awk '{s += $1} END {print s + 0}'; }
sum_hwm_kb() { local p; for p in "$@"; do hwm_kb "$p"; done | awk '{s += $1} END {print s + 0}'; }
# tree PID: the process and its children (nginx's master, worker, cache manager and loader).
tree() { echo "$1" $(ps -o pid= --ppid "$1"); }
cpu_ticks() { # total utime+stime of the given pids
	local t=0 p
	for p in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- results
declare -A R

record() { # label file: parse the BENCH/STAMPEDE key=value line into R[label.key]
	local label=$1 file=$2 line kv
	line=$(grep -E '^(BENCH|STAMPEDE) ' "$file" | tail -1) || die "no result line in $file: $(tail -5 "$file")"
	for kv in ${line#* }; do
		R[$label.${kv%%=*}]=${kv#*=}
	done
}

calls() { curl -s "$UPSTREAM/calls" | sed -E 's/.*"calls":([0-9]+).*/\1/'; }
unauthorized() { curl -s "$UPSTREAM/calls" | sed -E 's/.*"unauthorized":([0-9]+).*/\1/'; }
reset_calls() { curl -s -X POST "$UPSTREAM/calls/reset" >/dev/null; }
set_delay() { curl -sf -X POST "$UPSTREAM/delay?d=$1" >/dev/null; }

# run_wrk LABEL CONNS DURATION SCRIPT URL [script args...]; wrk also gets the
# options in the WRK_OPTS array.
WRK_OPTS=()
run_wrk() {
	local label=$1 conns=$2 dur=$3 script=$4 url=$5
	shift 5
	pin "$LOAD_CPU" wrk -t1 -c"$conns" -d"$dur" --timeout 10s --latency ${WRK_OPTS[@]+"${WRK_OPTS[@]}"} \
		-s "$ROOT/bench/$script" "$url" -- "$@" >"$RESULTS_DIR/wrk-$label.txt" 2>&1 ||
		die "wrk $label failed: $(tail -5 "$RESULTS_DIR/wrk-$label.txt")"
	record "$label" "$RESULTS_DIR/wrk-$label.txt"
}

# ---------------------------------------------------------------- build
if ((WAIT_QUIET > 0)); then
	log "waiting up to ${WAIT_QUIET}s for the 1-minute load average to fall below 1"
	for ((i = 0; i < WAIT_QUIET; i += 5)); do
		awk '{exit !($1 < 1)}' /proc/loadavg && break
		sleep 5
	done
fi
log "building (results in $RESULTS_DIR)"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
[[ -n $(git status --porcelain 2>/dev/null) ]] && COMMIT+="-dirty"
if [[ -n ${GATEWAY_BIN:-} ]]; then
	cp "$GATEWAY_BIN" "$WORK/bin/gateway"
else
	go build -o "$WORK/bin/gateway" . || die "go build . failed"
fi
go build -o "$WORK/bin/" ./bench/upstream ./bench/floor ./bench/stampede ./bench/flood
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

UPSTREAM_PORT=$(free_port)
UPSTREAM=http://127.0.0.1:$UPSTREAM_PORT
start upstream "$LOAD_CPU" env GOMAXPROCS=1 "$WORK/bin/upstream" -addr "127.0.0.1:$UPSTREAM_PORT" \
	-delay "$UPSTREAM_DELAY" -key "$API_KEY" -account "$ACCOUNT_ID"
UPSTREAM_PID=$PID
wait_http "$UPSTREAM/calls"

# ---------------------------------------------------------------- scenarios
# warm NAME PORT: ask once for each hot id; every answer must be 200.
warm() {
	local name=$1 port=$2 k cfg=$WORK/warm-$1.curl codes
	for ((k = 0; k < HOT_IDS; k++)); do
		printf 'url = "http://127.0.0.1:%d/customers/hot-%04d/signup"\noutput = "/dev/null"\n' "$port" "$k"
	done >"$cfg"
	codes=$(pin "$LOAD_CPU" curl -s -K "$cfg" -w '%{http_code}\n' | sort | uniq -c | tr -s ' ')
	[[ $codes == " $HOT_IDS 200" ]] || die "warming $name: status counts $codes"
}

# core_ticks CPU: busy time of one core, in clock ticks (user, nice, system,
# irq, softirq, steal).
core_ticks() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# hot NAME ROUND PORT PIDS...: one run over the cached ids; also the CPU
# the server used and what other processes took of its core meanwhile.
hot() {
	local name=$1 round=$2 port=$3 t0 t1 c0 c1 label=$1.hot.r$2
	shift 3
	reset_calls
	t0=$(cpu_ticks "$@") c0=$(core_ticks "$SERVER_CPU")
	run_wrk "$label" "$CONNECTIONS" "$DURATION" hot.lua "http://127.0.0.1:$port" "$HOT_IDS"
	t1=$(cpu_ticks "$@") c1=$(core_ticks "$SERVER_CPU")
	R[$label.cpu_pct]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="${R[$label.duration_us]}" 'BEGIN {printf "%.1f", 100 * t / hz / (d / 1e6)}')
	R[$label.others_pct]=$(awk -v t=$((c1 - c0 - t1 + t0)) -v hz="$CLK_TCK" -v d="${R[$label.duration_us]}" 'BEGIN {t = t < 0 ? 0 : t; printf "%.0f", 100 * t / hz / (d / 1e6)}')
	R[$label.upstream_calls]=$(calls)
}

# cold NAME ROUND URL PATH_TEMPLATE CONNS KIND PIDS...: one run where every
# request asks for a new id; also the server's CPU time per request.
cold() {
	local name=$1 round=$2 url=$3 tmpl=$4 conns=$5 kind=$6 label=$1.$6.r$2 t0 t1
	shift 6
	t0=$(cpu_ticks "$@")
	run_wrk "$label" "$conns" "$DURATION" cold.lua "$url" "$kind$RUN_ID-$name-$round" "$tmpl"
	t1=$(cpu_ticks "$@")
	R[$label.cpu_us_per_req]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${R[$label.requests]}" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
}

# pick PREFIX BY: copies the keys of the best round PREFIX.rN.* to PREFIX.*.
# BY is max:KEY or min:KEY.
pick() {
	local prefix=$1 how=${2%%:*} key=${2#*:} best="" r v k
	for ((r = 1; r <= ROUNDS; r++)); do
		v=${R[$prefix.r$r.$key]:-}
		[[ -z $v ]] && continue
		if [[ -z $best ]] || awk -v a="$v" -v b="${R[$prefix.r$best.$key]}" -v h="$how" 'BEGIN {exit !(h == "max" ? a > b : a < b)}'; then
			best=$r
		fi
	done
	[[ -n $best ]] || die "no result for $prefix"
	for k in "${!R[@]}"; do
		[[ $k == "$prefix.r$best."* ]] && R[$prefix.${k#"$prefix.r$best."}]=${R[$k]}
	done
	R[$prefix.round]=$best
}

# stampede NAME ROUND PORT WARM_PATH
stampede() {
	local name=$1 round=$2 port=$3 warm_path=$4 label=$1.stampede.r$2
	set_delay "$STAMPEDE_DELAY"
	pin "$LOAD_CPU" "$WORK/bin/stampede" -target "127.0.0.1:$port" -upstream "$UPSTREAM" \
		-n "$STAMPEDE_N" -id "stampede$RUN_ID-$name-$round" -warm-path "$warm_path" \
		>"$RESULTS_DIR/stampede-$name-$round.txt" 2>&1 || die "stampede $name: $(tail -5 "$RESULTS_DIR/stampede-$name-$round.txt")"
	record "$label" "$RESULTS_DIR/stampede-$name-$round.txt"
	# Worst first: more upstream calls, then a later last answer.
	R[$label.badness]=$(awk -v c="${R[$label.upstream_calls]}" -v t="${R[$label.max_after_upstream_ms]}" 'BEGIN {printf "%.2f", c * 1e6 + t}')
	set_delay "$UPSTREAM_DELAY"
}

# flood NAME PORT PID: FLOOD_IDS distinct ids in two halves; RSS of PID and its
# children before, between and after.
flood() {
	local name=$1 port=$2 pid=$3 half=$((FLOOD_IDS / 2)) part n
	set_delay "$FLOOD_DELAY"
	R[$name.flood.rss_before_kb]=$(sum_rss_kb $(tree "$pid"))
	for part in 1 2; do
		n=$half
		[[ $part == 2 ]] && n=$((FLOOD_IDS - half))
		pin "$LOAD_CPU" "$WORK/bin/flood" -target "http://127.0.0.1:$port" -n "$n" -c "$CONNECTIONS" \
			-prefix "flood$RUN_ID-$name-$part" >"$RESULTS_DIR/flood-$name-$part.txt" 2>&1 ||
			die "flood $name: $(tail -5 "$RESULTS_DIR/flood-$name-$part.txt")"
		record "$name.flood$part" "$RESULTS_DIR/flood-$name-$part.txt"
		[[ $part == 1 ]] && R[$name.flood.rss_half_kb]=$(sum_rss_kb $(tree "$pid"))
	done
	R[$name.flood.rss_end_kb]=$(sum_rss_kb $(tree "$pid"))
	R[$name.flood.hwm_kb]=$(sum_hwm_kb $(tree "$pid"))
	R[$name.flood.requests]=$((${R[$name.flood1.requests]} + ${R[$name.flood2.requests]}))
	R[$name.flood.errors]=0
	for part in 1 2; do
		for e in err_connect err_read err_status err_timeout; do
			R[$name.flood.errors]=$((${R[$name.flood.errors]} + ${R[$name.flood$part.$e]}))
		done
	done
	set_delay "$UPSTREAM_DELAY"
}

# gateway_profile KIND SCRIPT ARGS...: CPU and allocation profiles of the
# gateway under one more wrk run of KIND (hot or cold), not counted in the table.
gateway_profile() {
	local kind=$1 script=$2 secs=${DURATION%s} prof_pid alloc_pid out
	shift 2
	out=$RESULTS_DIR/profile-gateway-$kind.txt
	if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/") == 200 ]]; then
		curl -s -o "$RESULTS_DIR/gateway-$kind-cpu.pprof" \
			"http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/profile?seconds=$secs" &
		prof_pid=$!
		curl -s -o "$RESULTS_DIR/gateway-$kind-allocs.pprof" \
			"http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/allocs?seconds=$secs" &
		alloc_pid=$!
		run_wrk "gateway-${kind}prof" "$CONNECTIONS" "$((secs + 1))s" "$script" "http://127.0.0.1:$GW_PORT" "$@"
		wait "$prof_pid" "$alloc_pid" || true
		{
			echo "# CPU, flat"
			go tool pprof -top -nodecount=45 "$WORK/bin/gateway" "$RESULTS_DIR/gateway-$kind-cpu.pprof"
			echo "# CPU, cumulative"
			go tool pprof -top -cum -nodecount=80 "$WORK/bin/gateway" "$RESULTS_DIR/gateway-$kind-cpu.pprof"
			echo "# allocations (bytes), flat; requests served meanwhile: ${R[gateway-${kind}prof.requests]}"
			go tool pprof -top -sample_index=alloc_space -nodecount=30 "$WORK/bin/gateway" "$RESULTS_DIR/gateway-$kind-allocs.pprof"
			echo "# allocations (count), flat"
			go tool pprof -top -sample_index=alloc_objects -nodecount=40 "$WORK/bin/gateway" "$RESULTS_DIR/gateway-$kind-allocs.pprof"
		} >"$out" 2>&1 || true
		PROFILE_HOW="pprof from the admin listener"
	elif command -v perf >/dev/null; then
		pin "$LOAD_CPU" perf record -q -F 999 -g -p "$GW_PID" -o "$WORK/perf.data" -- sleep "$secs" \
			>"$WORK/perf.log" 2>&1 &
		prof_pid=$!
		run_wrk "gateway-${kind}prof" "$CONNECTIONS" "$((secs + 1))s" "$script" "http://127.0.0.1:$GW_PORT" "$@"
		wait "$prof_pid" || true
		{
			echo "# self time"
			perf report -i "$WORK/perf.data" --stdio --no-children --sort symbol -g none --percent-limit 0.7 2>/dev/null | grep -v '^$'
			echo "# including callees"
			perf report -i "$WORK/perf.data" --stdio --children --sort symbol -g none --percent-limit 3 2>/dev/null | grep -v '^$'
		} >"$out" || true
		PROFILE_HOW="perf record (the gateway exposes no pprof endpoint)"
	else
		PROFILE_HOW="none: no pprof endpoint and no perf"
	fi
}

# ---- start every server; each sits idle on SERVER_CPU while another is measured
GW_PORT=$(free_port)
GW_ADMIN_PORT=$(free_port)
log "gateway on 127.0.0.1:$GW_PORT (admin $GW_ADMIN_PORT)"
start gateway "$SERVER_CPU" env GOMAXPROCS=1 \
	BLUETAPE_BASE_URL="$UPSTREAM" BLUETAPE_API_KEY="$API_KEY" BLUETAPE_ACCOUNT_ID="$ACCOUNT_ID" \
	GATEWAY_LISTEN_ADDR="127.0.0.1:$GW_PORT" GATEWAY_ADMIN_ADDR="127.0.0.1:$GW_ADMIN_PORT" \
	GATEWAY_RATE_LIMIT=1000000 GATEWAY_RATE_BURST=1000000 GATEWAY_LOG_LEVEL=info \
	GATEWAY_CACHE_MAX_ENTRIES="$CACHE_MAX_ENTRIES" ${GATEWAY_EXTRA_ENV:-} \
	"$WORK/bin/gateway"
GW_PID=$PID
wait_http "http://127.0.0.1:$GW_ADMIN_PORT/readyz"

NG_PORT=$(free_port)
log "nginx on 127.0.0.1:$NG_PORT"
mkdir -p "$WORK/nginx-tmp" "$WORK/cache"
sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$NG_PORT|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
	-e "s|@API_KEY@|$API_KEY|g" -e "s|@ACCOUNT_ID@|$ACCOUNT_ID|g" -e "s|@USER@|$(id -un) $(id -gn)|g" \
	-e "s|@EXTRA_HTTP@|$NGINX_EXTRA|g" bench/nginx.conf >"$WORK/nginx.conf"
nginx -t -q -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" || die "nginx -t: $(cat "$WORK/nginx-error.log")"
start nginx "$SERVER_CPU" nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
NG_PID=$PID
wait_http "http://127.0.0.1:$NG_PORT/customers/!/signup" 404
NG_WORKER=""
for p in $(ps -o pid= --ppid "$NG_PID"); do
	[[ $(ps -o args= -p "$p") == *"worker process"* ]] && NG_WORKER=$p
done
[[ -n $NG_WORKER ]] || die "no nginx worker process"

FL_PORT=$(free_port)
log "floor on 127.0.0.1:$FL_PORT"
start floor "$SERVER_CPU" env GOMAXPROCS=1 "$WORK/bin/floor" -addr "127.0.0.1:$FL_PORT"
FL_PID=$PID
wait_http "http://127.0.0.1:$FL_PORT/customers/x/signup"

# "direct" is the same fake upstream the proxies call, called by wrk itself:
# what a proxy adds is the difference.
DIRECT_HEADERS=(-H "X-BlueTape-Key: $API_KEY" -H "X-Integration-AccountId: $ACCOUNT_ID")

# ---- hot: servers take turns, ROUNDS times; the best round of each counts
log "hot: warming 1,000 ids"
warm gateway "$GW_PORT"
warm nginx "$NG_PORT"
R[gateway.rss_warm_kb]=$(sum_rss_kb "$GW_PID")
R[nginx.rss_warm_kb]=$(sum_rss_kb $(tree "$NG_PID"))
for name in gateway nginx floor; do
	case $name in gateway) port=$GW_PORT ;; nginx) port=$NG_PORT ;; floor) port=$FL_PORT ;; esac
	run_wrk "$name-hotwarm" "$CONNECTIONS" 2s hot.lua "http://127.0.0.1:$port" "$HOT_IDS"
done
for ((round = 1; round <= ROUNDS; round++)); do
	log "hot: round $round of $ROUNDS"
	hot gateway "$round" "$GW_PORT" "$GW_PID"
	hot nginx "$round" "$NG_PORT" "$NG_WORKER"
	hot floor "$round" "$FL_PORT" "$FL_PID"
done
for name in gateway nginx floor; do pick "$name.hot" max:rps; done

if [[ $PROFILE == 1 ]]; then
	log "hot: gateway CPU profile"
	gateway_profile hot hot.lua "$HOT_IDS"
fi

# ---- cold: throughput at CONNECTIONS, then latency at LATENCY_CONNECTIONS
set_delay "$UPSTREAM_DELAY"
for kind in cold coldlat; do
	conns=$CONNECTIONS
	[[ $kind == coldlat ]] && conns=$LATENCY_CONNECTIONS
	for ((round = 1; round <= ROUNDS; round++)); do
		log "$kind ($conns connections): round $round of $ROUNDS"
		cold gateway "$round" "http://127.0.0.1:$GW_PORT" "/customers/%s/signup" "$conns" "$kind" "$GW_PID"
		cold nginx "$round" "http://127.0.0.1:$NG_PORT" "/customers/%s/signup" "$conns" "$kind" "$NG_WORKER"
		WRK_OPTS=("${DIRECT_HEADERS[@]}")
		cold direct "$round" "$UPSTREAM" "/integration/customer/%s/signup" "$conns" "$kind" "$UPSTREAM_PID"
		WRK_OPTS=()
	done
done
if [[ $PROFILE == 1 ]]; then
	log "cold: gateway CPU profile"
	gateway_profile cold cold.lua "prof$RUN_ID"
fi
for name in gateway nginx direct; do
	pick "$name.cold" max:rps
	pick "$name.coldlat" min:p50_us
done

# ---- stampede: the worst round counts
for ((round = 1; round <= ROUNDS; round++)); do
	log "stampede: round $round of $ROUNDS"
	stampede gateway "$round" "$GW_PORT" "/customers/!/signup"
	stampede nginx "$round" "$NG_PORT" "/customers/!/signup"
done
pick gateway.stampede max:badness
pick nginx.stampede max:badness

# ---- flood
log "flood: gateway, $FLOOD_IDS ids"
flood gateway "$GW_PORT" "$GW_PID"
R[gateway.flood.cache_entries]=$(curl -s "http://127.0.0.1:$GW_ADMIN_PORT/metrics" |
	awk '/^bluetape_gateway_cache_entries / {print $2}')
log "flood: nginx, $FLOOD_IDS ids"
flood nginx "$NG_PORT" "$NG_PID"
R[nginx.flood.worker_rss_kb]=$(rss_kb "$NG_WORKER")
R[nginx.flood.cache_kb]=$(du -sk "$WORK/cache" | cut -f1)
R[nginx.flood.cache_files]=$(find "$WORK/cache" -type f | wc -l)

R[unauthorized]=$(unauthorized)
tail -c 100000 "$WORK/gateway.log" >"$RESULTS_DIR/gateway-log-tail.txt" || true
cp "$WORK/nginx-error.log" "$RESULTS_DIR/nginx-error.log" 2>/dev/null || true

# ---------------------------------------------------------------- report
{
	echo "# raw results, $(date -u +%FT%TZ), commit $COMMIT"
	for k in "${!R[@]}"; do echo "$k=${R[$k]}"; done | sort
} >"$RESULTS_DIR/results.txt"

num() { awk -v x="$1" 'BEGIN {printf "%.0f", x}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "%.2f", a / b}'; }
ms_of_us() { awk -v x="$1" 'BEGIN {printf "%.2f", x / 1000}'; }
mib() { awk -v x="$1" 'BEGIN {printf "%.1f", x / 1024}'; }
cpu_us() { awk -v p="${R[$1.hot.cpu_pct]}" -v r="${R[$1.hot.rps]}" 'BEGIN {printf "%.1f", p / 100 * 1e6 / r}'; }
verdict() { awk "BEGIN {print ($1) ? \"met\" : \"**missed**\"}"; }

g_hot=${R[gateway.hot.rps]} n_hot=${R[nginx.hot.rps]} f_hot=${R[floor.hot.rps]}
g_add=$((${R[gateway.coldlat.p50_us]} - ${R[direct.coldlat.p50_us]}))
n_add=$((${R[nginx.coldlat.p50_us]} - ${R[direct.coldlat.p50_us]}))
g_bound_kb=$((${R[gateway.rss_warm_kb]} + CACHE_MAX_ENTRIES * FLOOD_BYTES_PER_ENTRY / 1024))
g_entries=${R[gateway.flood.cache_entries]:-}

TABLE=$(
	echo "Commit \`$COMMIT\`; one core per server, wrk -t1 -c$CONNECTIONS for $DURATION, best of $ROUNDS rounds; upstream delay $UPSTREAM_DELAY;" \
		"load average $LOAD_START at start, $(cut -d' ' -f1 /proc/loadavg) at end (other work on the machine skews the figures)."
	echo
	echo "| scenario | gateway | nginx | gateway/nginx | target | |"
	echo "|---|---:|---:|---:|---|---|"
	echo "| hot req/s (1,000 cached ids) | $(num "$g_hot") | $(num "$n_hot") | $(ratio "$g_hot" "$n_hot") | ≥ 1.3× nginx | $(verdict "$(ratio "$g_hot" "$n_hot") >= 1.3") |"
	echo "| hot req/s, floor (bare Echo) | $(num "$f_hot") | | gateway/floor $(ratio "$g_hot" "$f_hot") | ≥ 0.8× floor | $(verdict "$(ratio "$g_hot" "$f_hot") >= 0.8") |"
	for p in p50 p99 p999; do
		g=${R[gateway.hot.${p}_us]} n=${R[nginx.hot.${p}_us]}
		if [[ $p == p99 ]]; then t="≤ nginx" v=$(verdict "$g <= $n"); else t="" v=""; fi
		echo "| hot ${p/p999/p99.9} latency, ms (floor: $(ms_of_us "${R[floor.hot.${p}_us]}")) | $(ms_of_us "$g") | $(ms_of_us "$n") | $(ratio "$g" "$n") | $t | $v |"
	done
	echo "| hot: server's CPU use, % of its core (floor: ${R[floor.hot.cpu_pct]}) | ${R[gateway.hot.cpu_pct]} | ${R[nginx.hot.cpu_pct]} | | | |"
	echo "| hot: other processes on that core, % (floor: ${R[floor.hot.others_pct]}) | ${R[gateway.hot.others_pct]} | ${R[nginx.hot.others_pct]} | | | |"
	echo "| hot: server CPU per request, µs (floor: $(cpu_us floor)) | $(cpu_us gateway) | $(cpu_us nginx) | $(ratio "$(cpu_us gateway)" "$(cpu_us nginx)") | | |"
	echo "| cold req/s (every id new, $CONNECTIONS conns) | $(num "${R[gateway.cold.rps]}") | $(num "${R[nginx.cold.rps]}") | $(ratio "${R[gateway.cold.rps]}" "${R[nginx.cold.rps]}") | ≥ nginx | $(verdict "${R[gateway.cold.rps]} >= ${R[nginx.cold.rps]}") |"
	echo "| cold: server CPU per request, µs (upstream: ${R[direct.cold.cpu_us_per_req]}) | ${R[gateway.cold.cpu_us_per_req]} | ${R[nginx.cold.cpu_us_per_req]} | $(ratio "${R[gateway.cold.cpu_us_per_req]}" "${R[nginx.cold.cpu_us_per_req]}") | | |"
	echo "| cold p50 / p99 latency, ms | $(ms_of_us "${R[gateway.cold.p50_us]}") / $(ms_of_us "${R[gateway.cold.p99_us]}") | $(ms_of_us "${R[nginx.cold.p50_us]}") / $(ms_of_us "${R[nginx.cold.p99_us]}") | | | |"
	echo "| cold, upstream direct: req/s, p50 / p99 ms | $(num "${R[direct.cold.rps]}"), $(ms_of_us "${R[direct.cold.p50_us]}") / $(ms_of_us "${R[direct.cold.p99_us]}") | (same) | | | |"
	echo "| cold p50 added over direct upstream, µs ($LATENCY_CONNECTIONS conns) | $g_add | $n_add | | < 150 µs | $(verdict "$g_add < 150") |"
	echo "| stampede: upstream calls for $STAMPEDE_N concurrent cold requests | ${R[gateway.stampede.upstream_calls]} | ${R[nginx.stampede.upstream_calls]} | | exactly 1 | $(verdict "${R[gateway.stampede.upstream_calls]} == 1") |"
	echo "| stampede: first→last answer spread, ms | ${R[gateway.stampede.spread_ms]} | ${R[nginx.stampede.spread_ms]} | | | |"
	echo "| stampede: last answer after upstream's, ms | ${R[gateway.stampede.max_after_upstream_ms]} | ${R[nginx.stampede.max_after_upstream_ms]} | | ≤ 20 ms | $(verdict "${R[gateway.stampede.max_after_upstream_ms]} <= 20 && ${R[gateway.stampede.ok]} == $STAMPEDE_N") |"
	echo "| flood: ids sent / failed | ${R[gateway.flood.requests]} / ${R[gateway.flood.errors]} | ${R[nginx.flood.requests]} / ${R[nginx.flood.errors]} | | | |"
	echo "| RSS with the 1,000 hot ids cached, MiB | $(mib "${R[gateway.rss_warm_kb]}") | $(mib "${R[nginx.rss_warm_kb]}") | | | |"
	echo "| flood: RSS before / half-way / end, MiB | $(mib "${R[gateway.flood.rss_before_kb]}") / $(mib "${R[gateway.flood.rss_half_kb]}") / $(mib "${R[gateway.flood.rss_end_kb]}") | $(mib "${R[nginx.flood.rss_before_kb]}") / $(mib "${R[nginx.flood.rss_half_kb]}") / $(mib "${R[nginx.flood.rss_end_kb]}") | $(ratio "${R[gateway.flood.rss_end_kb]}" "${R[nginx.flood.rss_end_kb]}") | ≤ $(mib "$g_bound_kb") MiB | $(verdict "${R[gateway.flood.rss_end_kb]} <= $g_bound_kb && 0${g_entries%.*} <= $CACHE_MAX_ENTRIES") |"
	echo "| flood: cached entries / nginx cache dir | ${g_entries:-?} (max $CACHE_MAX_ENTRIES) | ${R[nginx.flood.cache_files]} files, $(mib "${R[nginx.flood.cache_kb]}") MiB | | | |"
)
{
	echo
	echo "$TABLE"
	echo
	others=$(printf '%s\n' "${R[gateway.hot.others_pct]}" "${R[nginx.hot.others_pct]}" "${R[floor.hot.others_pct]}" | sort -n | tail -1)
	if awk -v o="$others" 'BEGIN {exit !(o > 5)}'; then
		echo "WARNING: other processes took up to $others% of the servers' core during the counted hot rounds; the figures are skewed. Rerun on a quiet machine (WAIT_QUIET=600)."
	fi
	echo "Upstream calls during the hot runs: gateway ${R[gateway.hot.upstream_calls]}, nginx ${R[nginx.hot.upstream_calls]}, floor n/a."
	echo "Upstream calls rejected for bad credential headers: ${R[unauthorized]} (should be 0)."
	bad=$(for k in "${!R[@]}"; do
		if [[ $k == *.err_* && ${R[$k]} != 0 ]]; then echo "${k%.err_*} ${k##*.}=${R[$k]}"; fi
	done | sort | tr '\n' ';')
	echo "Runs with failed requests (non-2xx, timeouts, socket errors): ${bad:-none}."
	echo "nginx RSS is master + worker + cache manager/loader; the worker alone ended at $(mib "${R[nginx.flood.worker_rss_kb]}") MiB."
	if [[ $PROFILE == 1 ]]; then echo "Gateway CPU and allocation profiles ($PROFILE_HOW): $RESULTS_DIR/profile-gateway-{hot,cold}.txt"; fi
	echo "Raw results: $RESULTS_DIR/results.txt"
} | tee "$RESULTS_DIR/table.md"
