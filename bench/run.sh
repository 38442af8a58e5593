#!/usr/bin/env bash
# bench/run.sh: load benchmark of the gateway side by side with nginx
# (bench/nginx.conf), HAProxy (bench/haproxy.cfg) and Varnish (bench/varnish.vcl)
# doing the same job, and with a bare Echo handler (bench-tool floor) as the
# upper bound. It also measures the gateway's hot path with callers authenticating (a
# static token, a service-account JWT) and with tracing configured but not
# sampled. Everything listens on 127.0.0.1.
#
#   bash bench/run.sh            # full run
#   QUICK=1 bash bench/run.sh    # short run (one round of 3 s runs, 50,000-id flood)
#
# Before measuring, every server is checked: the right body for a hot and a
# fresh id, a 404 passed on, and the upstream receiving each credential exactly
# once although the caller sent its own (the fake upstream refuses anything else).
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
# GATEWAY_EXTRA_ENV (more VAR=value words for every gateway, e.g. GOGC=400),
# PEERS ("nginx haproxy varnish": the peers to run), TRACE_SAMPLER_ARG (0: the
# ratio of the tracing variant's sampler).
#
# The servers run on SERVER_CPU with one core's worth of threads each
# (GOMAXPROCS=1, worker_processes 1, nbthread 1, one Varnish thread pool) and are
# measured one at a time, taking turns; the idle ones cost nothing. wrk, the
# fake upstream behind the proxies and the stampede and flood clients share
# LOAD_CPU. The figures are printed as a markdown table and kept with the raw
# outputs in RESULTS_DIR.
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

log() { printf '== %s %s\n' "$(date -u +%T)" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
PEERS=${PEERS:-nginx haproxy varnish}
TRACE_SAMPLER_ARG=${TRACE_SAMPLER_ARG:-0}
has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
PATH=$PATH:/usr/sbin:/sbin
missing=()
has_peer nginx && ! command -v nginx >/dev/null && missing+=(nginx-light)
has_peer haproxy && ! command -v haproxy >/dev/null && missing+=(haproxy)
has_peer varnish && ! command -v varnishd >/dev/null && missing+=(varnish)
if has_peer varnish && ! compgen -G '/usr/lib/*/varnish/vmods/libvmod_vsthrottle.so' >/dev/null; then
	missing+=(varnish-modules)
fi
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt_get() { apt-get -o DPkg::Lock::Timeout=300 -y -q "$@"; }
	apt_get update >/dev/null
	for m in "${missing[@]}"; do
		if [[ $m == nginx-light ]]; then
			apt_get install nginx-light >/dev/null || apt_get install nginx >/dev/null
		else
			apt_get install "$m" >/dev/null
		fi
	done
fi
need=(wrk taskset curl ss go)
has_peer nginx && need+=(nginx)
has_peer haproxy && need+=(haproxy)
has_peer varnish && need+=(varnishd varnishncsa varnishstat)
for c in "${need[@]}"; do
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
	local rc=$? i
	# On failure, keep the servers' own logs for the post-mortem.
	((rc == 0)) || cp "$WORK"/*.log "$RESULTS_DIR/" 2>/dev/null || true
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

wait_http() { # url [want status [seconds]]: poll up to 30 s
	local url=$1 want=${2:-200} secs=${3:-30} i code
	for ((i = 0; i < secs * 10; i++)); do
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

upstream_count() { curl -s "$UPSTREAM/calls" | sed -E "s/.*\"$1\":([0-9]+).*/\\1/"; }
calls() { upstream_count calls; }
unauthorized() { upstream_count unauthorized; }
reset_calls() { curl -s -X POST "$UPSTREAM/calls/reset" >/dev/null; }
set_delay() { curl -sf -X POST "$UPSTREAM/delay?d=$1" >/dev/null; }

# run_wrk LABEL CONNS DURATION URL MODE [args...]: wrk with bench/ids.lua in
# MODE (hot or cold) and its arguments; wrk also gets the options in the
# WRK_OPTS array.
WRK_OPTS=()
run_wrk() {
	local label=$1 conns=$2 dur=$3 url=$4
	shift 4
	pin "$LOAD_CPU" wrk -t1 -c"$conns" -d"$dur" --timeout 10s --latency ${WRK_OPTS[@]+"${WRK_OPTS[@]}"} \
		-s "$ROOT/bench/ids.lua" "$url" -- "$@" >"$RESULTS_DIR/wrk-$label.txt" 2>&1 ||
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
# bench-tool: the fake upstream, the floor, the issuer and the stampede and flood clients.
go build -o "$WORK/bin/bench-tool" ./bench/tool || die "go build ./bench/tool failed"
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)

UPSTREAM_PORT=$(free_port)
UPSTREAM=http://127.0.0.1:$UPSTREAM_PORT
start upstream "$LOAD_CPU" env GOMAXPROCS=1 "$WORK/bin/bench-tool" upstream -addr "127.0.0.1:$UPSTREAM_PORT" \
	-delay "$UPSTREAM_DELAY" -key "$API_KEY" -account "$ACCOUNT_ID"
UPSTREAM_PID=$PID
wait_http "$UPSTREAM/calls"

# ---------------------------------------------------------------- servers
# Every server measured is registered here: PORT[name]; CPU_PIDS[name], the
# processes whose CPU time is the server's (nginx's worker, Varnish's cache
# process); AUX_PIDS[name], helpers reported apart (varnishncsa); MEM_PIDS[name],
# the processes whose RSS is summed; HDR[name], a request header wrk and the
# checks send; TITLE[name], the name in the table.
declare -A PORT CPU_PIDS AUX_PIDS MEM_PIDS HDR TITLE ADMIN_PORT
TITLE=([gateway]=gateway [nginx]=nginx [haproxy]=HAProxy [varnish]=Varnish [floor]=floor)

# The Go runtime's settings of the manifests (GOGC, GOMEMLIMIT), so that the
# gateway is measured as it runs in production.
MANIFEST_RUNTIME_ENV=()
for var in GOGC GOMEMLIMIT; do
	val=$(awk -v v="$var" '$0 ~ "- name: "v"$" {getline; gsub(/.*value: *"?|"$/, ""); print; exit}' \
		"$ROOT/deploy/base/deployment.yaml")
	[[ -n $val ]] || die "deploy/base/deployment.yaml sets no $var"
	MANIFEST_RUNTIME_ENV+=("$var=$val")
done

# start_gateway NAME [VAR=value...]: one more gateway process, configured by
# environment like the open one plus the given variables.
start_gateway() {
	local name=$1 port admin
	shift
	port=$(free_port) admin=$(free_port)
	log "$name on 127.0.0.1:$port (admin $admin)"
	start "$name" "$SERVER_CPU" env GOMAXPROCS=1 "${MANIFEST_RUNTIME_ENV[@]}" \
		BLUETAPE_BASE_URL="$UPSTREAM" BLUETAPE_API_KEY="$API_KEY" BLUETAPE_ACCOUNT_ID="$ACCOUNT_ID" \
		GATEWAY_LISTEN_ADDR="127.0.0.1:$port" GATEWAY_ADMIN_ADDR="127.0.0.1:$admin" \
		GATEWAY_RATE_LIMIT=1000000 GATEWAY_RATE_BURST=100 GATEWAY_LOG_LEVEL=info \
		GATEWAY_CACHE_MAX_ENTRIES="$CACHE_MAX_ENTRIES" "$@" ${GATEWAY_EXTRA_ENV:-} \
		"$WORK/bin/gateway"
	PORT[$name]=$port ADMIN_PORT[$name]=$admin CPU_PIDS[$name]=$PID MEM_PIDS[$name]=$PID
	wait_http "http://127.0.0.1:$admin/readyz"
}

# The profiles below come from the admin listener's /debug/pprof/, which is
# served only with an admin token.
ADMIN_TOKEN_FILE=$WORK/admin-token
printf 'bench-admin-token-not-a-secret\n' >"$ADMIN_TOKEN_FILE"
ADMIN_AUTH="Authorization: Bearer bench-admin-token-not-a-secret"
start_gateway gateway GATEWAY_ADMIN_TOKEN_FILE="$ADMIN_TOKEN_FILE"
GW_PID=${CPU_PIDS[gateway]} GW_PORT=${PORT[gateway]} GW_ADMIN_PORT=${ADMIN_PORT[gateway]}

# Gateway variants: measured on the hot path only, each against the open
# gateway above. A variant is a name, a title, the gateway's extra
# environment and the header its callers send.
VARIANTS=()

# Callers authenticate with a static bearer token (a callers file entry with
# a rate far too high to refuse).
BENCH_TOKEN=bench-caller-token-not-a-secret
printf 'callers:\n  - name: bench-caller\n    token_sha256: %s\n    rate: 1000000\n    burst: 100\n' \
	"$(printf '%s' "$BENCH_TOKEN" | sha256sum | cut -d' ' -f1)" >"$WORK/callers.yaml"
start_gateway gateway-auth GATEWAY_CALLERS_FILE="$WORK/callers.yaml"
TITLE[gateway-auth]="auth (static bearer token)" HDR[gateway-auth]="Authorization: Bearer $BENCH_TOKEN"
VARIANTS+=(gateway-auth)

# Callers authenticate with a service-account JWT: a stand-in for the
# Kubernetes API server (bench-tool issuer) serves discovery and its key set and
# writes one token, and the callers file lists the token's subject. The
# gateway verifies the token at the first request and remembers it.
ISSUER_PORT=$(free_port)
ISSUER=http://127.0.0.1:$ISSUER_PORT
start issuer "$LOAD_CPU" "$WORK/bin/bench-tool" issuer -addr "127.0.0.1:$ISSUER_PORT" -token "$WORK/jwt"
wait_http "$ISSUER/.well-known/openid-configuration"
printf 'callers:\n  - name: bench-caller\n    subject: system:serviceaccount:bench:bench-caller\n    rate: 1000000\n    burst: 100\n' \
	>"$WORK/callers-jwt.yaml"
start_gateway gateway-jwt GATEWAY_JWT_ISSUER="$ISSUER" GATEWAY_CALLERS_FILE="$WORK/callers-jwt.yaml"
TITLE[gateway-jwt]="auth (service-account JWT, cached after the first request)"
HDR[gateway-jwt]="Authorization: Bearer $(<"$WORK/jwt")"
VARIANTS+=(gateway-jwt)

# Tracing configured but not sampled: spans would go to the fake upstream's
# OTLP sink (POST /v1/traces, counted as traceExports).
start_gateway gateway-trace OTEL_EXPORTER_OTLP_ENDPOINT="$UPSTREAM" OTEL_SERVICE_NAME=bluetape-gateway-bench \
	OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG="$TRACE_SAMPLER_ARG"
TITLE[gateway-trace]="tracing configured, not sampled (ratio $TRACE_SAMPLER_ARG)"
VARIANTS+=(gateway-trace)

if has_peer nginx; then
	port=$(free_port)
	log "nginx on 127.0.0.1:$port"
	mkdir -p "$WORK/nginx-tmp" "$WORK/cache"
	sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
		-e "s|@API_KEY@|$API_KEY|g" -e "s|@ACCOUNT_ID@|$ACCOUNT_ID|g" -e "s|@USER@|$(id -un) $(id -gn)|g" \
		-e "s|@EXTRA_HTTP@|$NGINX_EXTRA|g" bench/nginx.conf >"$WORK/nginx.conf"
	nginx -t -q -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" || die "nginx -t: $(cat "$WORK/nginx-error.log")"
	start nginx "$SERVER_CPU" nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"
	NG_PID=$PID
	wait_http "http://127.0.0.1:$port/customers/!/signup" 404
	NG_WORKER=""
	for p in $(ps -o pid= --ppid "$NG_PID"); do
		[[ $(ps -o args= -p "$p") == *"worker process"* ]] && NG_WORKER=$p
	done
	[[ -n $NG_WORKER ]] || die "no nginx worker process"
	PORT[nginx]=$port CPU_PIDS[nginx]=$NG_WORKER MEM_PIDS[nginx]="$(tree "$NG_PID")"
fi

if has_peer haproxy; then
	port=$(free_port) stats_port=$(free_port)
	log "HAProxy on 127.0.0.1:$port"
	sed -e "s|@PORT@|$port|g" -e "s|@STATS_PORT@|$stats_port|g" -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" \
		-e "s|@API_KEY@|$API_KEY|g" -e "s|@ACCOUNT_ID@|$ACCOUNT_ID|g" bench/haproxy.cfg >"$WORK/haproxy.cfg"
	haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy -c failed"
	# -db: foreground, one process; its stdout (the access log) goes to $WORK/haproxy.log.
	start haproxy "$SERVER_CPU" haproxy -db -f "$WORK/haproxy.cfg"
	PORT[haproxy]=$port CPU_PIDS[haproxy]=$PID MEM_PIDS[haproxy]=$PID HA_STATS_PORT=$stats_port
	wait_http "http://127.0.0.1:$port/customers/!/signup" 400 60
fi

# Varnish: one thread pool; it needs a thread per connection being served
# (200 for the stampede), so the pool may grow to 1,000, and starts with 100
# so that thread creation is not measured. It runs as the current user with
# no privilege separation (-j none) in its own work dir, without a CLI port.
VARNISH_MALLOC=${VARNISH_MALLOC:-128m}
if has_peer varnish; then
	port=$(free_port)
	log "Varnish on 127.0.0.1:$port"
	mkdir -p "$WORK/varnish"
	sed -e "s|@UPSTREAM_PORT@|$UPSTREAM_PORT|g" -e "s|@API_KEY@|$API_KEY|g" -e "s|@ACCOUNT_ID@|$ACCOUNT_ID|g" \
		bench/varnish.vcl >"$WORK/varnish.vcl"
	start varnish "$SERVER_CPU" varnishd -F -j none -n "$WORK/varnish" -T none -a "127.0.0.1:$port" \
		-f "$WORK/varnish.vcl" -s "malloc,$VARNISH_MALLOC" \
		-p thread_pools=1 -p thread_pool_min=100 -p thread_pool_max=1000
	VA_PID=$PID
	# The VCL is compiled with cc at start: allow for a busy machine.
	wait_http "http://127.0.0.1:$port/customers/!/signup" 400 120
	VA_CHILD=$(ps -o pid=,comm= --ppid "$VA_PID" | awk '$2 == "cache-main" {print $1}')
	[[ -n $VA_CHILD ]] || die "no Varnish cache-main process"
	# Varnish's access log: varnishncsa reads the shared-memory log and writes
	# the file, on the same core.
	start varnishncsa "$SERVER_CPU" varnishncsa -n "$WORK/varnish" -w "$WORK/varnish-access.log"
	PORT[varnish]=$port CPU_PIDS[varnish]=$VA_CHILD AUX_PIDS[varnish]=$PID MEM_PIDS[varnish]="$VA_PID $VA_CHILD"
fi

port=$(free_port)
log "floor on 127.0.0.1:$port"
start floor "$SERVER_CPU" env GOMAXPROCS=1 "$WORK/bin/bench-tool" floor -addr "127.0.0.1:$port"
PORT[floor]=$port CPU_PIDS[floor]=$PID MEM_PIDS[floor]=$PID
wait_http "http://127.0.0.1:$port/customers/x/signup"

# The floor again, sent the JWT variant's Authorization header: what reading
# a header of about 1 KB costs net/http itself, apart from the gateway's work.
port=$(free_port)
log "floor-jwt on 127.0.0.1:$port"
start floor-jwt "$SERVER_CPU" env GOMAXPROCS=1 "$WORK/bin/bench-tool" floor -addr "127.0.0.1:$port"
PORT[floor-jwt]=$port CPU_PIDS[floor-jwt]=$PID MEM_PIDS[floor-jwt]=$PID HDR[floor-jwt]=${HDR[gateway-jwt]}
TITLE[floor-jwt]="floor sent the JWT variant's header"
wait_http "http://127.0.0.1:$port/customers/x/signup"

read -r -a PEER_LIST <<<"$PEERS"
PROXIES=(gateway "${PEER_LIST[@]}")               # every scenario
HOT_SERVERS=(gateway "${VARIANTS[@]}" "${PEER_LIST[@]}" floor floor-jwt)

# ---------------------------------------------------------------- scenarios
# curl_get NAME PATH [curl args...]: prints the body, a newline and the status.
curl_get() {
	local name=$1 path=$2
	shift 2
	local h=()
	[[ -n ${HDR[$name]:-} ]] && h=(-H "${HDR[$name]}")
	curl -s -w '\n%{http_code}' ${h[@]+"${h[@]}"} "$@" "http://127.0.0.1:${PORT[$name]}$path"
}

# check_signup NAME ID [curl args...]: the answer must be 200 with ID's signup URL.
check_signup() {
	local name=$1 id=$2 out url
	shift 2
	out=$(curl_get "$name" "/customers/$id/signup" "$@")
	[[ ${out##*$'\n'} == 200 ]] || die "check $name: $id answered ${out##*$'\n'}: ${out%$'\n'*}"
	url=$(sed -nE 's/.*"signUpUrl": *"([^"]*)".*/\1/p' <<<"${out%$'\n'*}")
	[[ $url == "https://www.bluetape.com/signup?id=$id" ]] || die "check $name: $id answered ${out%$'\n'*}"
}

# verify NAME: before measuring, the server must answer like the gateway: a
# hot id's URL; a fresh id's URL, fetched from the upstream once for two
# requests, although the caller sends its own credential headers (the fake
# upstream refuses a request unless each credential is there exactly once,
# with the configured value); an upstream 404 passed on (whether it was
# cached is recorded).
verify() {
	local name=$1 id=verify$RUN_ID-$1 c0 u0 out i
	local evil=(-H "X-BlueTape-Key: caller-key" -H "X-Integration-AccountId: caller-account")
	check_signup "$name" hot-0001
	c0=$(calls) u0=$(unauthorized)
	check_signup "$name" "$id" "${evil[@]}"
	check_signup "$name" "$id" "${evil[@]}"
	(($(unauthorized) == u0)) || die "check $name: the upstream refused its credential headers"
	(($(calls) == c0 + 1)) || die "check $name: two requests for one id made $(($(calls) - c0)) upstream calls"
	c0=$(calls)
	for i in 1 2; do
		out=$(curl_get "$name" "/customers/notfound$RUN_ID-$name/signup" "${evil[@]}")
		[[ ${out##*$'\n'} == 404 && $out == *"Customer not found."* ]] || die "check $name: upstream 404 answered ${out##*$'\n'}"
	done
	R[$name.notfound_calls]=$(($(calls) - c0))
	if [[ $name == gateway-auth || $name == gateway-jwt ]]; then
		out=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$name]}/customers/hot-0001/signup")
		[[ $out == 401 ]] || die "check $name: no token answered $out"
	fi
}

# warm NAME: ask once for each hot id; every answer must be 200.
warm() {
	local name=$1 k cfg=$WORK/warm-$1.curl codes
	{
		if [[ -n ${HDR[$name]:-} ]]; then printf 'header = "%s"\n' "${HDR[$name]}"; fi
		for ((k = 0; k < HOT_IDS; k++)); do
			printf 'url = "http://127.0.0.1:%d/customers/hot-%04d/signup"\noutput = "/dev/null"\n' "${PORT[$name]}" "$k"
		done
	} >"$cfg"
	codes=$(pin "$LOAD_CPU" curl -s -K "$cfg" -w '%{http_code}\n' | sort | uniq -c | tr -s ' ')
	[[ $codes == " $HOT_IDS 200" ]] || die "warming $name: status counts $codes"
}

# core_ticks CPU: busy time of one core, in clock ticks (user, nice, system,
# irq, softirq, steal).
core_ticks() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

# per_req LABEL KEY TICKS: R[LABEL.KEY] = CPU µs per request of LABEL's run.
per_req() {
	R[$1.$2]=$(awk -v t="$3" -v hz="$CLK_TCK" -v n="${R[$1.requests]}" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
}
# pct LABEL KEY TICKS: R[LABEL.KEY] = TICKS as % of one core over LABEL's run.
pct() {
	R[$1.$2]=$(awk -v t="$3" -v hz="$CLK_TCK" -v d="${R[$1.duration_us]}" 'BEGIN {t = t < 0 ? 0 : t; printf "%.1f", 100 * t / hz / (d / 1e6)}')
}

# load NAME LABEL CONNS URL MODE ARGS...: one wrk run (run_wrk) against NAME with
# its header, and the CPU its processes (and helpers, and others on its
# core) used meanwhile.
load() {
	local name=$1 label=$2 conns=$3 url=$4 t0 t1 a0 a1 c0 c1
	shift 4
	WRK_OPTS=()
	[[ -n ${HDR[$name]:-} ]] && WRK_OPTS=(-H "${HDR[$name]}")
	[[ $name == direct ]] && WRK_OPTS=("${DIRECT_HEADERS[@]}")
	t0=$(cpu_ticks ${CPU_PIDS[$name]}) a0=$(cpu_ticks ${AUX_PIDS[$name]:-}) c0=$(core_ticks "$SERVER_CPU")
	run_wrk "$label" "$conns" "$DURATION" "$url" "$@"
	t1=$(cpu_ticks ${CPU_PIDS[$name]}) a1=$(cpu_ticks ${AUX_PIDS[$name]:-}) c1=$(core_ticks "$SERVER_CPU")
	WRK_OPTS=()
	per_req "$label" cpu_us_per_req $((t1 - t0))
	per_req "$label" aux_us_per_req $((a1 - a0))
	pct "$label" cpu_pct $((t1 - t0))
	pct "$label" others_pct $((c1 - c0 - t1 + t0 - a1 + a0))
}

# hot NAME ROUND: one run over the cached ids.
hot() {
	reset_calls
	load "$1" "$1.hot.r$2" "$CONNECTIONS" "http://127.0.0.1:${PORT[$1]}" hot "$HOT_IDS"
	R[$1.hot.r$2.upstream_calls]=$(calls)
}

# cold NAME ROUND KIND CONNS: one run where every request asks for a new id.
cold() {
	local name=$1 round=$2 kind=$3 conns=$4 url tmpl=/customers/%s/signup
	url=http://127.0.0.1:${PORT[$name]:-}
	[[ $name == direct ]] && url=$UPSTREAM tmpl=/integration/customer/%s/signup
	load "$name" "$name.$kind.r$round" "$conns" "$url" cold "$kind$RUN_ID-$name-$round" "$tmpl"
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

# stampede NAME ROUND: STAMPEDE_N connections ask for one fresh id at once.
stampede() {
	local name=$1 round=$2 label=$1.stampede.r$2
	set_delay "$STAMPEDE_DELAY"
	pin "$LOAD_CPU" "$WORK/bin/bench-tool" stampede -target "http://127.0.0.1:${PORT[$name]}" -upstream "$UPSTREAM" \
		-n "$STAMPEDE_N" -id "stampede$RUN_ID-$name-$round" -warm-path "/customers/!/signup" \
		>"$RESULTS_DIR/stampede-$name-$round.txt" 2>&1 || die "stampede $name: $(tail -5 "$RESULTS_DIR/stampede-$name-$round.txt")"
	record "$label" "$RESULTS_DIR/stampede-$name-$round.txt"
	# Worst first: more upstream calls, then a later last answer.
	R[$label.badness]=$(awk -v c="${R[$label.upstream_calls]}" -v t="${R[$label.last_ms]}" 'BEGIN {printf "%.2f", c * 1e6 + t}')
	set_delay "$UPSTREAM_DELAY"
}

# cache_entries NAME: how many ids the server holds now.
cache_entries() {
	case $1 in
	gateway) curl -s "http://127.0.0.1:$GW_ADMIN_PORT/metrics" | awk '/^bluetape_gateway_cache_entries / {printf "%d", $2}' ;;
	nginx) find "$WORK/cache" -type f | wc -l ;;
	haproxy)
		exec 3<>"/dev/tcp/127.0.0.1/$HA_STATS_PORT"
		echo "show cache" >&3
		grep -c ' hash:' <&3 || true
		exec 3<&-
		;;
	varnish) varnishstat -n "$WORK/varnish" -1 -f MAIN.n_object | awk '{print $2}' ;;
	esac
}

# flood NAME: FLOOD_IDS distinct ids in two halves; RSS before, between and
# after, and RSS per cached entry above the RSS with the hot ids cached.
flood() {
	local name=$1 half=$((FLOOD_IDS / 2)) part n e
	set_delay "$FLOOD_DELAY"
	R[$name.flood.rss_before_kb]=$(sum_rss_kb ${MEM_PIDS[$name]})
	for part in 1 2; do
		n=$half
		[[ $part == 2 ]] && n=$((FLOOD_IDS - half))
		pin "$LOAD_CPU" "$WORK/bin/bench-tool" flood -target "http://127.0.0.1:${PORT[$name]}" -n "$n" -c "$CONNECTIONS" \
			-prefix "flood$RUN_ID-$name-$part" >"$RESULTS_DIR/flood-$name-$part.txt" 2>&1 ||
			die "flood $name: $(tail -5 "$RESULTS_DIR/flood-$name-$part.txt")"
		record "$name.flood$part" "$RESULTS_DIR/flood-$name-$part.txt"
		[[ $part == 1 ]] && R[$name.flood.rss_half_kb]=$(sum_rss_kb ${MEM_PIDS[$name]})
	done
	R[$name.flood.rss_end_kb]=$(sum_rss_kb ${MEM_PIDS[$name]})
	R[$name.flood.hwm_kb]=$(sum_hwm_kb ${MEM_PIDS[$name]})
	R[$name.flood.entries]=$(cache_entries "$name")
	R[$name.flood.rss_per_entry_b]=$(awk -v a="${R[$name.rss_warm_kb]}" -v b="${R[$name.flood.rss_end_kb]}" \
		-v n="${R[$name.flood.entries]}" -v h="$HOT_IDS" 'BEGIN {if (n > h) printf "%.0f", (b - a) * 1024 / (n - h)}')
	R[$name.flood.requests]=$((${R[$name.flood1.requests]} + ${R[$name.flood2.requests]}))
	R[$name.flood.errors]=0
	for part in 1 2; do
		for e in err_connect err_read err_status err_timeout; do
			R[$name.flood.errors]=$((${R[$name.flood.errors]} + ${R[$name.flood$part.$e]}))
		done
	done
	set_delay "$UPSTREAM_DELAY"
}

# gateway_profile KIND ARGS...: CPU and allocation profiles of the gateway
# under one more wrk run of KIND (hot or cold: bench/ids.lua's mode, with ARGS),
# not counted in the table.
gateway_profile() {
	local kind=$1 secs=${DURATION%s} prof_pid alloc_pid out
	shift
	out=$RESULTS_DIR/profile-gateway-$kind.txt
	if [[ $(curl -s -o /dev/null -w '%{http_code}' -H "$ADMIN_AUTH" "http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/") == 200 ]]; then
		curl -s -H "$ADMIN_AUTH" -o "$RESULTS_DIR/gateway-$kind-cpu.pprof" \
			"http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/profile?seconds=$secs" &
		prof_pid=$!
		curl -s -H "$ADMIN_AUTH" -o "$RESULTS_DIR/gateway-$kind-allocs.pprof" \
			"http://127.0.0.1:$GW_ADMIN_PORT/debug/pprof/allocs?seconds=$secs" &
		alloc_pid=$!
		run_wrk "gateway-${kind}prof" "$CONNECTIONS" "$((secs + 1))s" "http://127.0.0.1:$GW_PORT" "$kind" "$@"
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
		run_wrk "gateway-${kind}prof" "$CONNECTIONS" "$((secs + 1))s" "http://127.0.0.1:$GW_PORT" "$kind" "$@"
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

# "direct" is the same fake upstream the proxies call, called by wrk itself:
# what a proxy adds is the difference.
DIRECT_HEADERS=(-H "X-BlueTape-Key: $API_KEY" -H "X-Integration-AccountId: $ACCOUNT_ID")
CPU_PIDS[direct]=$UPSTREAM_PID

# ---- check that every server does the job before measuring anything
log "checking every server's answers and the credentials the upstream receives"
log "hot: warming 1,000 ids"
for name in "${HOT_SERVERS[@]}"; do
	[[ $name == floor* ]] && continue
	warm "$name"
	R[$name.rss_warm_kb]=$(sum_rss_kb ${MEM_PIDS[$name]})
	verify "$name"
done
out=$(curl_get floor /customers/hot-0001/signup)
[[ ${out##*$'\n'} == 200 && $out == *'"signUpUrl"'* ]] || die "check floor: answered $out"

# ---- hot: servers take turns, ROUNDS times; the best round of each counts
for name in "${HOT_SERVERS[@]}"; do
	WRK_OPTS=()
	[[ -n ${HDR[$name]:-} ]] && WRK_OPTS=(-H "${HDR[$name]}")
	run_wrk "$name-hotwarm" "$CONNECTIONS" 2s "http://127.0.0.1:${PORT[$name]}" hot "$HOT_IDS"
done
WRK_OPTS=()
for ((round = 1; round <= ROUNDS; round++)); do
	log "hot: round $round of $ROUNDS"
	for name in "${HOT_SERVERS[@]}"; do hot "$name" "$round"; done
done
for name in "${HOT_SERVERS[@]}"; do pick "$name.hot" max:rps; done

if [[ $PROFILE == 1 ]]; then
	log "hot: gateway CPU profile"
	gateway_profile hot "$HOT_IDS"
fi

# ---- cold: throughput at CONNECTIONS, then latency at LATENCY_CONNECTIONS
set_delay "$UPSTREAM_DELAY"
for kind in cold coldlat; do
	conns=$CONNECTIONS
	[[ $kind == coldlat ]] && conns=$LATENCY_CONNECTIONS
	for ((round = 1; round <= ROUNDS; round++)); do
		log "$kind ($conns connections): round $round of $ROUNDS"
		for name in "${PROXIES[@]}" direct; do cold "$name" "$round" "$kind" "$conns"; done
	done
done
if [[ $PROFILE == 1 ]]; then
	log "cold: gateway CPU profile"
	gateway_profile cold "prof$RUN_ID"
fi
for name in "${PROXIES[@]}" direct; do
	pick "$name.cold" max:rps
	pick "$name.coldlat" min:p50_us
done
for name in "${PROXIES[@]}"; do
	R[$name.added_us]=$((${R[$name.coldlat.p50_us]} - ${R[direct.coldlat.p50_us]}))
done

# ---- stampede: the worst round counts
for ((round = 1; round <= ROUNDS; round++)); do
	log "stampede: round $round of $ROUNDS"
	for name in "${PROXIES[@]}"; do stampede "$name" "$round"; done
done
for name in "${PROXIES[@]}"; do pick "$name.stampede" max:badness; done

# ---- flood
for name in "${PROXIES[@]}"; do
	log "flood: $name, $FLOOD_IDS ids"
	flood "$name"
done
if has_peer nginx; then
	R[nginx.flood.worker_rss_kb]=$(rss_kb "$NG_WORKER")
	R[nginx.flood.cache_kb]=$(du -sk "$WORK/cache" | cut -f1)
fi

R[unauthorized]=$(unauthorized)
R[trace_exports]=$(upstream_count traceExports)
LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
tail -c 100000 "$WORK/gateway.log" >"$RESULTS_DIR/gateway-log-tail.txt" || true
cp "$WORK/nginx-error.log" "$RESULTS_DIR/nginx-error.log" 2>/dev/null || true
for f in haproxy.log varnish-access.log nginx-access.log; do
	[[ -f $WORK/$f ]] && tail -n 20 "$WORK/$f" >"$RESULTS_DIR/$f-tail.txt"
done

# ---------------------------------------------------------------- report
{
	echo "# raw results, $(date -u +%FT%TZ), commit $COMMIT"
	for k in "${!R[@]}"; do echo "$k=${R[$k]}"; done | sort
} >"$RESULTS_DIR/results.txt"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b == 0) print ""; else printf "%.2f", a / b}'; }
mib() { awk -v x="$1" 'BEGIN {printf "%.1f", x / 1024}'; }
# fmt KIND VALUE: n (integer), ms (from µs), raw.
fmt() {
	[[ -z $2 ]] && return
	case $1 in
	n) awk -v x="$2" 'BEGIN {printf "%.0f", x}' ;;
	ms) awk -v x="$2" 'BEGIN {printf "%.2f", x / 1000}' ;;
	mib) mib "$2" ;;
	*) printf '%s' "$2" ;;
	esac
}

COLUMNS_T=(gateway "${PEER_LIST[@]}" floor)
# row TITLE KEY KIND [NOTE_FOR_MISSING]: one table row; a server without
# the value gets "–" and the note.
row() {
	local title=$1 key=$2 kind=$3 note=${4:-} s v line g
	line="| $title |"
	for s in "${COLUMNS_T[@]}"; do
		v=$(fmt "$kind" "${R[$s.$key]:-}")
		line+=" ${v:-–$note} |"
	done
	g=${R[gateway.$key]:-}
	for s in "${COLUMNS_T[@]:1}"; do
		line+=" $(ratio "$g" "${R[$s.$key]:-}") |"
	done
	echo "$line"
}
# variant_row NAME: the gateway variant's hot figures against the open gateway's.
variant_row() {
	local v=$1 line s
	# Two ratios to the open hot path: by req/s, and by CPU per request
	# (open/variant), which other work on the machine disturbs less.
	line="| hot, ${TITLE[$v]}: req/s (× open), p50 / p99 ms, CPU µs/req (× open) | $(fmt n "${R[$v.hot.rps]}") ($(ratio "${R[$v.hot.rps]}" "${R[gateway.hot.rps]}")×), $(fmt ms "${R[$v.hot.p50_us]}") / $(fmt ms "${R[$v.hot.p99_us]}"), ${R[$v.hot.cpu_us_per_req]} ($(ratio "${R[gateway.hot.cpu_us_per_req]}" "${R[$v.hot.cpu_us_per_req]}")×) |"
	for s in "${COLUMNS_T[@]:1}"; do line+=" –ᶜ |"; done
	for s in "${COLUMNS_T[@]:1}"; do line+="  |"; done
	echo "$line"
}

TABLE=$(
	echo "Commit \`$COMMIT\`, $(date -u '+%F %H:%M') UTC; one core per server, wrk -t1 -c$CONNECTIONS for $DURATION, best of $ROUNDS rounds;" \
		"upstream delay $UPSTREAM_DELAY; load average $LOAD_START at start, $LOAD_END at end (other work on the machine skews the figures)."
	echo
	line="| scenario |"
	sep="|---|"
	for s in "${COLUMNS_T[@]}"; do line+=" ${TITLE[$s]} |"; sep+="---:|"; done
	for s in "${COLUMNS_T[@]:1}"; do line+=" gateway/${TITLE[$s]} |"; sep+="---:|"; done
	echo "$line"
	echo "$sep"
	row "hot req/s (1,000 cached ids)" hot.rps n
	row "hot p50, ms" hot.p50_us ms
	row "hot p99, ms" hot.p99_us ms
	row "hot CPU per request, µs" hot.cpu_us_per_req raw
	row "hot CPU use, % of the core" hot.cpu_pct raw
	row "cold req/s (every id new, $CONNECTIONS conns)" cold.rps n ᵃ
	row "cold p50, ms" cold.p50_us ms ᵃ
	row "cold p99, ms" cold.p99_us ms ᵃ
	row "cold CPU per request, µs" cold.cpu_us_per_req raw ᵃ
	row "cold CPU use, % of the core" cold.cpu_pct raw ᵃ
	row "p50 added over a direct upstream call, µs ($LATENCY_CONNECTIONS conns)" added_us raw ᵃ
	row "stampede: upstream calls for $STAMPEDE_N waiters on one cold id" stampede.upstream_calls raw ᵃ
	row "stampede: last answer, ms (upstream takes $STAMPEDE_DELAY)" stampede.last_ms raw ᵃ
	row "flood: RSS per cached entry, bytesᵇ" flood.rss_per_entry_b raw ᵃ
	row "flood: entries kept at the end" flood.entries raw ᵃ
	row "flood: RSS at the end, MiB" flood.rss_end_kb mib ᵃ
	for v in "${VARIANTS[@]}"; do variant_row "$v"; done
	line="| hot, ${TITLE[floor-jwt]}: req/s (× floor), p50 / p99 ms, CPU µs/req (× floor) | –ᶜ |"
	for s in "${COLUMNS_T[@]:1:${#COLUMNS_T[@]}-2}"; do line+=" –ᶜ |"; done
	line+=" $(fmt n "${R[floor-jwt.hot.rps]}") ($(ratio "${R[floor-jwt.hot.rps]}" "${R[floor.hot.rps]}")×), $(fmt ms "${R[floor-jwt.hot.p50_us]}") / $(fmt ms "${R[floor-jwt.hot.p99_us]}"), ${R[floor-jwt.hot.cpu_us_per_req]} ($(ratio "${R[floor.hot.cpu_us_per_req]}" "${R[floor-jwt.hot.cpu_us_per_req]}")×) |"
	for s in "${COLUMNS_T[@]:1}"; do line+="  |"; done
	echo "$line"
)
{
	echo
	echo "$TABLE"
	echo
	echo "Ratios are gateway/peer: above 1 is better for the gateway on req/s, worse on latency, CPU, calls and memory."
	echo "ᵃ The floor answers a constant: it has no cache, no upstream and no memory to bound."
	echo "ᵇ (RSS at the end − RSS with the 1,000 hot ids cached) / (entries − 1,000). The cold runs and a flood of $FLOOD_IDS new ids came in between."
	echo "ᶜ Only the gateway authenticates callers and traces requests in this benchmark."
	echo
	others=$(for s in "${HOT_SERVERS[@]}"; do echo "${R[$s.hot.others_pct]}"; done | sort -n | tail -1)
	if awk -v o="$others" 'BEGIN {exit !(o > 5)}'; then
		echo "WARNING: other processes took up to $others% of the servers' core during the counted hot rounds; the figures are skewed. Rerun on a quiet machine (WAIT_QUIET=600)."
	fi
	echo "Direct upstream calls (wrk → fake upstream, $CONNECTIONS conns): $(fmt n "${R[direct.cold.rps]}") req/s, p50 $(fmt ms "${R[direct.cold.p50_us]}") ms / p99 $(fmt ms "${R[direct.cold.p99_us]}") ms; at $LATENCY_CONNECTIONS conns p50 $(fmt ms "${R[direct.coldlat.p50_us]}") ms."
	line="Upstream calls for two requests of one 404 id:"
	for s in "${PROXIES[@]}"; do line+=" ${TITLE[$s]} ${R[$s.notfound_calls]},"; done
	echo "${line%,} (1: the 404 is cached)."
	line="Upstream calls during the hot runs:"
	for s in "${HOT_SERVERS[@]}"; do [[ $s == floor* ]] || line+=" ${TITLE[$s]} ${R[$s.hot.upstream_calls]},"; done
	echo "${line%,}."
	echo "Upstream calls refused for bad credential headers: ${R[unauthorized]} (should be 0). OTLP exports received from the tracing variant: ${R[trace_exports]}."
	if has_peer varnish; then
		echo "Varnish's CPU is its cache process; varnishncsa (its access log, same core) took ${R[varnish.hot.aux_us_per_req]} µs per request more on the hot path and ${R[varnish.cold.aux_us_per_req]} µs on the cold path."
	fi
	if has_peer nginx; then
		echo "nginx keeps its entries in files (on tmpfs here, not in its RSS): $(mib "${R[nginx.flood.cache_kb]}") MiB at the end of the flood; its RSS is master + worker + cache manager/loader, the worker alone ended at $(mib "${R[nginx.flood.worker_rss_kb]}") MiB."
	fi
	line="Flood ids sent / failed:"
	for s in "${PROXIES[@]}"; do line+=" ${TITLE[$s]} ${R[$s.flood.requests]} / ${R[$s.flood.errors]},"; done
	echo "${line%,}."
	bad=$(for k in "${!R[@]}"; do
		if [[ $k == *.err_* && ${R[$k]} != 0 ]]; then echo "${k%.err_*} ${k##*.}=${R[$k]}"; fi
	done | sort | tr '\n' ';')
	echo "Runs with failed requests (non-2xx, timeouts, socket errors): ${bad:-none}."
	if [[ $PROFILE == 1 ]]; then echo "Gateway CPU and allocation profiles ($PROFILE_HOW): $RESULTS_DIR/profile-gateway-{hot,cold}.txt"; fi
	echo "Raw results: $RESULTS_DIR/results.txt"
} | tee "$RESULTS_DIR/table.md"
