#!/usr/bin/env bash
# Load test: what does the audit trail cost on the request path?
#
# Measures, in one run and on the same server process:
#   gated     GET /v1/customers/{id}                  the real route: every
#             stage, and the request waits for its audit event to commit
#   baseline  GET /bench/baseline/customers/{id}      the same stages and the
#             same DB read, WITHOUT the audit event (mounted only because this
#             script sets server.bench_baseline_route, which is refused in
#             production mode: see src/http/bench.rs for why there is no
#             "audit off" switch)
#   healthz   GET /healthz                            the HTTP floor
# in ROUNDS alternating gated/baseline pairs, and prints requests/s, p99
# latency, CPU per request and gated/baseline per pair and as medians, for
# SQLite and, when DATABASE_URL (or PG_ADMIN_URL) is set, PostgreSQL.
#
# Usage:
#   bench/load.sh                                   # SQLite only
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres bench/load.sh
#       # also PostgreSQL: a scratch database is created and dropped (psql)
#   DATABASE_URL=postgres://user@host/emptydb bench/load.sh
#       # also PostgreSQL, in that database: it must be EMPTY and disposable
#       # (customers are sealed with a key generated for this run)
#
# Knobs (environment): CUSTOMERS=1000 DURATION=10s ROUNDS=3 THREADS=2
#   CONNECTIONS="32 128" PORT=18080 SKIP_BUILD=1 (reuse $CARGO_TARGET_DIR or
#   target, release/custodian)
#
# Why two concurrencies: an audited request waits for its batch's commit,
# which includes one fsync of the trail. With few concurrent callers the
# closed loop of the load tool is bounded by that wait and the server idles
# (the gated number is then latency, not capacity); with enough callers the
# server is saturated and the ratio is that of capacities.
#
# Needs: cargo, curl, openssl, and wrk (Debian/Ubuntu: `apt-get install -y
# wrk`); falls back to oha (`cargo install oha`) when wrk is missing.
# Loopback only; every wrk run is bounded by DURATION.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CUSTOMERS="${CUSTOMERS:-1000}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32 128}"
CONNS=32 # the concurrency of the current measurement
PORT="${PORT:-18080}"
SECRET="load-test-only-hs256-secret-0123456789abcdef"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/custodian-load.XXXXXX")"
SERVER_PID=""
PG_SCRATCH=""

cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n "$PG_SCRATCH" ]]; then psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_SCRATCH WITH (FORCE)" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if command -v wrk >/dev/null; then TOOL=wrk
elif command -v oha >/dev/null; then TOOL=oha
else echo "error: install wrk (apt-get install -y wrk) or oha (cargo install oha)" >&2; exit 1; fi

if [[ -z "${SKIP_BUILD:-}" ]]; then
    echo "building release..." >&2
    (cd "$ROOT" && cargo build --release --bin custodian >&2)
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/custodian"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
token() { hs256_token "$SECRET" "$1" "$2"; } # sub role

start_server() { # database url ("" = SQLite in the data dir)
    local data="$WORK/data-$RANDOM"
    mkdir -p "$data"
    # DATABASE_URL would override the SQLite run: pass the URL explicitly.
    env -u DATABASE_URL \
    CUSTODIAN_DATA_DIR="$data" \
    CUSTODIAN_POLICY_DIR="$ROOT/policies" \
    CUSTODIAN_INSTANCE_ID="load" \
    CUSTODIAN_DATABASE__URL="$1" \
    CUSTODIAN_SERVER__LISTEN="127.0.0.1:$PORT" \
    CUSTODIAN_SERVER__RATE_LIMIT_PER_SECOND=0 \
    CUSTODIAN_SERVER__BENCH_BASELINE_ROUTE=true \
    CUSTODIAN_AUTH__DEV_HS256_SECRET="$SECRET" \
    CUSTODIAN_LOG__LEVEL=warn \
        "$BIN" serve >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "error: server did not become ready; log:" >&2; cat "$WORK/server.log" >&2; exit 1
}

stop_server() {
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}

seed() { # N customers through the API (support reads need no consent:
         # customer_support rests on the contract, not on consent)
    local ingest
    ingest=$(token load-ingest ingest_service)
    seq 1 "$CUSTOMERS" | xargs -P 4 -I{} curl -s -o /dev/null -w '%{http_code}\n' \
        -H "authorization: Bearer $ingest" -H 'x-purpose: data_ingestion' \
        -H 'content-type: application/json' \
        -d '{"external_id":"L-{}","email":"user{}@example.com","phone":"+44 20 7946 {}","name":"Load User {}","city":"Leeds","country":"United Kingdom"}' \
        "http://127.0.0.1:$PORT/v1/customers" | sort | uniq -c | awk '$2 != 201 {bad=1} END {exit bad}' \
        || { echo "error: seeding failed (non-201 answers)" >&2; exit 1; }
}

# CPU time (clock ticks) of the server process, and of every PostgreSQL
# process (0 on SQLite, where the database runs inside the server).
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
server_ticks() { ticks_of "$SERVER_PID"; }
pg_snapshot() { # "pid ticks" per PostgreSQL process
    local p
    for p in $(pgrep -x postgres 2>/dev/null); do echo "$p $(ticks_of "$p")"; done
}
pg_delta() { # CPU ticks between two snapshots, per process (a backend that
             # started in between counts whole; one that exited is lost)
    awk 'NR == FNR {t[$1] = $2; next} {d += $2 - (($1 in t) ? t[$1] : 0)} END {print d + 0}' \
        <(echo "$1") <(echo "$2")
}

# Runs one measurement; prints "rps p99_ms errors server_us_per_req db_us_per_req".
measure() { # path_prefix (random customer appended) or full path; token
    local path="$1" tok="$2" out s0 d0 s1 d1 hz db
    hz=$(getconf CLK_TCK)
    s0=$(server_ticks); d0=$(pg_snapshot)
    if [[ $TOOL == wrk ]]; then
        cat >"$WORK/req.lua" <<EOF
wrk.headers["authorization"] = "Bearer $tok"
wrk.headers["x-purpose"] = "customer_support"
local prefix, n = "$path", $CUSTOMERS
request = function()
  if prefix:sub(-1) == "/" then
    return wrk.format("GET", prefix .. "L-" .. math.random(1, n))
  end
  return wrk.format("GET", prefix)
end
EOF
        out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/req.lua" "http://127.0.0.1:$PORT")
        echo "$out" >>"$WORK/wrk.log"
        awk '
            /Requests\/sec:/ {rps=$2}
            $1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; p99=v}
            /Non-2xx or 3xx responses:/ {err=$NF}
            /Socket errors:/ {err+=0}
            END {printf "%s %.2f %d", rps, p99, err+0}' <<<"$out"
    else
        # oha cannot randomise the path: a fixed customer.
        [[ "${path: -1}" == "/" ]] && path="${path}L-1"
        out=$(oha --no-tui -z "$DURATION" -c "$CONNS" --json \
            -H "authorization: Bearer $tok" -H "x-purpose: customer_support" \
            "http://127.0.0.1:$PORT$path")
        jq -j '"\(.summary.requestsPerSec) \(.latencyPercentiles.p99 * 1000) \([.statusCodeDistribution | to_entries[] | select(.key | startswith("2") | not) | .value] | add // 0)"' <<<"$out"
    fi
    s1=$(server_ticks); d1=$(pg_snapshot); db=$(pg_delta "$d0" "$d1")
    # CPU microseconds per request: where the time goes, robust to a busy machine.
    awk -v out="$out" -v s=$((s1 - s0)) -v d="$db" -v hz="$hz" -v dur="${DURATION%s}" 'BEGIN {
        n = 0; if (match(out, /Requests\/sec: *[0-9.]+/)) { split(substr(out, RSTART, RLENGTH), a, ":"); n = a[2] * dur }
        if (n == 0) n = 1
        printf " %.0f %.0f\n", s * 1e6 / hz / n, d * 1e6 / hz / n }'
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

metric() { # name: its value on the running server
    curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

run_backend() { # name database_url
    local name="$1" url="$2" support health conns round g b rows batches events
    start_server "$url"
    seed
    support=$(token load-support support_agent)
    # Warm-up (token cache, connections, page cache).
    DURATION=2s measure "/v1/customers/" "$support" >/dev/null
    DURATION=2s measure "/bench/baseline/customers/" "$support" >/dev/null
    health=$(measure "/healthz" "$support")
    read -r h_rps h_p99 h_err h_cpu h_db <<<"$health"
    printf '\n== %s (%s customers, %s rounds of %s per route, %s wrk threads, %s) ==\n' \
        "$name" "$CUSTOMERS" "$ROUNDS" "$DURATION" "$THREADS" "$TOOL"
    printf 'floor /healthz: %.0f requests/s, p99 %.2f ms, server %d µs/req\n' "$h_rps" "$h_p99" "$h_cpu"
    for conns in $CONNECTIONS; do
        CONNS="$conns"
        rows=""
        batches=$(metric custodian_audit_batches_total)
        events=$(metric custodian_audit_events_total)
        # Alternating rounds: a shared machine drifts over a run, and
        # pairing each gated run with the baseline run right after it keeps
        # the drift out of the ratio; the medians are the result.
        for round in $(seq 1 "$ROUNDS"); do
            g=$(measure "/v1/customers/" "$support")
            b=$(measure "/bench/baseline/customers/" "$support")
            rows+="$round $g $b"$'\n'
        done
        batches=$(( $(metric custodian_audit_batches_total) - batches ))
        events=$(( $(metric custodian_audit_events_total) - events ))
        report "$conns" "$rows" "$batches" "$events"
    done
    stop_server
}

report() { # connections rows batches events
    local conns="$1" rows="$2" mg mb mr gp bp
    printf '\n-- %s connections --\n' "$conns"
    printf '%-6s %-34s %11s %8s %8s %14s %12s\n' round route "requests/s" "p99 ms" non-2xx "server µs/req" "db µs/req"
    while read -r round g_rps g_p99 g_err g_cpu g_db b_rps b_p99 b_err b_cpu b_db; do
        [[ -z "$round" ]] && continue
        printf '%-6s %-34s %11.0f %8.2f %8d %14d %12d\n' "$round" "gated (audit)  /v1/customers/{id}" "$g_rps" "$g_p99" "$g_err" "$g_cpu" "$g_db"
        printf '%-6s %-34s %11.0f %8.2f %8d %14d %12d\n' "$round" "baseline (no audit)" "$b_rps" "$b_p99" "$b_err" "$b_cpu" "$b_db"
        awk -v g="$g_rps" -v b="$b_rps" -v r="$round" 'BEGIN {printf "%-6s gated/baseline %.1f%%\n", r, 100*g/b}'
    done <<<"$rows"
    mg=$(awk '{print $2}' <<<"$rows" | grep . | median)
    mb=$(awk '{print $7}' <<<"$rows" | grep . | median)
    mr=$(awk '$2 > 0 && $7 > 0 {print 100*$2/$7}' <<<"$rows" | median)
    gp=$(awk '{print $3}' <<<"$rows" | grep . | median)
    bp=$(awk '{print $8}' <<<"$rows" | grep . | median)
    printf 'median: gated %.0f req/s (p99 %.2f ms), baseline %.0f req/s (p99 %.2f ms)\n' "$mg" "$gp" "$mb" "$bp"
    printf 'gated/baseline throughput at %s connections: median of the rounds %.1f%% (target >= 80%%)\n' "$conns" "$mr"
    awk -v n="$4" -v b="$3" 'BEGIN {if (b > 0) printf "audit group commit: %d events in %d transactions (%.1f per commit)\n", n, b, n/b}'
}

echo "load generator: $TOOL; machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
run_backend SQLite ""

run_postgres custodian_load
