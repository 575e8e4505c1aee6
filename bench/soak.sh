#!/usr/bin/env bash
# Soak: one minute at saturation over the main routes, mixed, per backend.
#
# Starts the release server with the demo shop (3,000 customers, 10,000
# orders, 30,000 events, the recommendation models built at start), then
# drives a weighted mix of reads and writes with wrk for DURATION:
#
#   30%  GET  /v1/customers/{id}                 support_agent, customer_support
#   10%  GET  /v1/customers?limit=50             support_agent
#   10%  GET  /v1/customers/{id}/orders          support_agent
#    5%  GET  /v1/consents/{id}                  support_agent
#   10%  GET  /v1/recommendations/products/{sku}/together   recommendation_service
#    5%  GET  /v1/recommendations/popular        recommendation_service
#    5%  POST /v1/segments/query                 marketing_analyst (size + distributions)
#    3%  GET  /v1/segments/builtin/rfm           marketing_analyst
#    2%  GET  /v1/profiles/clusters?k=4          marketing_analyst
#    5%  GET  /v1/audit?limit=50                 compliance_officer
#   10%  POST /v1/events                         ingest_service (one new event each)
#    5%  POST /v1/customers                      ingest_service (one new customer each)
#
# and samples the server's resident memory every 2 s. It passes when every
# answer was 2xx, wrk saw no socket error, and memory at the end is within
# MEM_SLACK percent (default 25) of memory after the first 10 s.
#
# The privacy budget is stretched for the run (the largest total, the smallest
# epsilon per query: 100,000 fresh answers; every write changes the data
# version, so each segment question is a fresh draw that costs epsilon; the
# soak measures availability, not the budget, which has its own tests).
#
# Usage:
#   bench/soak.sh                                        # SQLite
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres bench/soak.sh
#       # also PostgreSQL, in a scratch database created and dropped here
# Knobs: DURATION=60s CONNECTIONS=64 THREADS=2 PORT=18090 SKIP_BUILD=1 MEM_SLACK=25
#   KEEP_WORK=1 keeps the work directory (server log, wrk errors) for a look
#   ANALYTICS=0 sends the segment, RFM and cluster share to the gated read
#   instead (to tell the analytics' cost under writes from the rest).
# Needs: cargo, curl, openssl, wrk (apt-get install -y wrk), psql for PostgreSQL.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-60s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
PORT="${PORT:-18090}"
MEM_SLACK="${MEM_SLACK:-25}"
ANALYTICS="${ANALYTICS:-1}"
SECRET="soak-test-only-hs256-secret-0123456789abcdef"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/custodian-soak.XXXXXX")"
SERVER_PID=""
SAMPLER_PID=""
PG_SCRATCH=""
FAILED=0

cleanup() {
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n "$PG_SCRATCH" ]]; then psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $PG_SCRATCH WITH (FORCE)" >/dev/null 2>&1 || true; fi
    if [[ -n "${KEEP_WORK:-}" ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "error: install wrk (apt-get install -y wrk)" >&2; exit 1; }
if [[ -z "${SKIP_BUILD:-}" ]]; then
    echo "building release..." >&2
    (cd "$ROOT" && cargo build --release --bin custodian >&2)
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/custodian"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
token() { hs256_token "$SECRET" "soak-$1" "$1"; } # role

start_server() { # database url ("" = SQLite in the data dir)
    local data="$WORK/data-$RANDOM"
    mkdir -p "$data"
    env -u DATABASE_URL \
    CUSTODIAN_DATA_DIR="$data" \
    CUSTODIAN_POLICY_DIR="$ROOT/policies" \
    CUSTODIAN_INSTANCE_ID="soak" \
    CUSTODIAN_DATABASE__URL="$1" \
    CUSTODIAN_SERVER__LISTEN="127.0.0.1:$PORT" \
    CUSTODIAN_SERVER__RATE_LIMIT_PER_SECOND=0 \
    CUSTODIAN_PRIVACY__BUDGET_EPSILON=100 \
    CUSTODIAN_PRIVACY__EPSILON_PER_QUERY=0.001 \
    CUSTODIAN_AUTH__DEV_HS256_SECRET="$SECRET" \
    CUSTODIAN_LOG__LEVEL=warn \
        "$BIN" serve --demo >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        if curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null; then return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "error: server did not become ready; log:" >&2; cat "$WORK/server.log" >&2; exit 1
}

wait_for_model() { # the recommendation build started with the server
    local t
    t=$(token recommendation_service)
    for _ in $(seq 1 600); do
        if curl -s -H "authorization: Bearer $t" -H 'x-purpose: personalization' \
            "http://127.0.0.1:$PORT/v1/recommendations/popular?n=3" | grep -q '"model_version"'; then
            return 0
        fi
        sleep 0.5
    done
    echo "error: no recommendation model after 5 minutes" >&2; exit 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }

write_script() {
    cat >"$WORK/soak.lua" <<EOF
local support = "Bearer $(token support_agent)"
local recs = "Bearer $(token recommendation_service)"
local analyst = "Bearer $(token marketing_analyst)"
local officer = "Bearer $(token compliance_officer)"
local ingest = "Bearer $(token ingest_service)"
local counter = 0
thread_id = "0" -- set per thread by setup()
local analytics = $ANALYTICS == 1
local at = "2025-12-31T12:00:00Z"
local segment = '{"definition": {"all": [{"country": {"in": ["United Kingdom", "Germany"]}}, '
  .. '{"frequency": {"min": 2, "within_days": 365}}, {"monetary": {"min": 50, "within_days": 365}}]}, '
  .. '"as_of": "2026-01-01T00:00:00Z", "distributions": ["country", "rfm_cell"]}'

local threads = 0
function setup(thread)
  -- Unique per thread and per run, so created ids never collide.
  threads = threads + 1
  thread:set("thread_id", string.format("%d-%d", os.time(), threads))
end

local function h(auth, purpose, json)
  local t = {["authorization"] = auth, ["x-purpose"] = purpose}
  if json then t["content-type"] = "application/json" end
  return t
end

local function customer() return string.format("demo-c%05d", math.random(0, 2999)) end
local function sku() return string.format("DEMO-%04d", math.random(0, 199)) end

request = function()
  counter = counter + 1
  local r = math.random(1, 100)
  if not analytics and r > 70 and r <= 80 then r = 1 end
  if r <= 30 then
    return wrk.format("GET", "/v1/customers/" .. customer(), h(support, "customer_support"))
  elseif r <= 40 then
    return wrk.format("GET", "/v1/customers?limit=50", h(support, "customer_support"))
  elseif r <= 50 then
    return wrk.format("GET", "/v1/customers/" .. customer() .. "/orders", h(support, "customer_support"))
  elseif r <= 55 then
    return wrk.format("GET", "/v1/consents/" .. customer(), h(support, "customer_support"))
  elseif r <= 65 then
    return wrk.format("GET", "/v1/recommendations/products/" .. sku() .. "/together?n=10", h(recs, "personalization"))
  elseif r <= 70 then
    return wrk.format("GET", "/v1/recommendations/popular?country=United%20Kingdom&n=10", h(recs, "personalization"))
  elseif r <= 75 then
    return wrk.format("POST", "/v1/segments/query", h(analyst, "marketing_analytics", true), segment)
  elseif r <= 78 then
    return wrk.format("GET", "/v1/segments/builtin/rfm?as_of=2026-01-01T00:00:00Z", h(analyst, "marketing_analytics"))
  elseif r <= 80 then
    return wrk.format("GET", "/v1/profiles/clusters?k=4&as_of=2026-01-01T00:00:00Z", h(analyst, "marketing_analytics"))
  elseif r <= 85 then
    return wrk.format("GET", "/v1/audit?limit=50", h(officer, "compliance_audit"))
  elseif r <= 95 then
    local id = string.format("soak-%s-%d", thread_id, counter)
    local body = '{"events": [{"event_id": "' .. id .. '", "kind": "search", "channel": "web", '
      .. '"occurred_at": "' .. at .. '", "properties": {"query": "teapot", "results": 3}}]}'
    return wrk.format("POST", "/v1/events", h(ingest, "data_ingestion", true), body)
  else
    local id = string.format("soak-%s-%d", thread_id, counter)
    local body = '{"external_id": "' .. id .. '", "email": "' .. id .. '@example.com", '
      .. '"name": "Soak Test", "city": "Leeds", "country": "United Kingdom"}'
    return wrk.format("POST", "/v1/customers", h(ingest, "data_ingestion", true), body)
  end
end

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 300 and (statuses[status] or 0) <= 3 then
    io.stderr:write("non-2xx " .. status .. ": " .. string.sub(body, 1, 200) .. "\n")
  end
end
EOF
}

run_backend() { # name database_url
    local name="$1" url="$2" out rss0 rss10 rss_end rss_max non2xx sockerr rps p99 verdict
    start_server "$url"
    wait_for_model
    write_script
    # Warm-up: token cache, connections, features and the first segment answers.
    wrk -t"$THREADS" -c"$CONNECTIONS" -d5s -s "$WORK/soak.lua" "http://127.0.0.1:$PORT" >/dev/null 2>&1
    rss0=$(rss_kb)
    : >"$WORK/rss.log"
    ( while kill -0 "$SERVER_PID" 2>/dev/null; do echo "$(date +%s) $(rss_kb)" >>"$WORK/rss.log"; sleep 2; done ) &
    SAMPLER_PID=$!
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency --timeout 10s -s "$WORK/soak.lua" \
        "http://127.0.0.1:$PORT" 2>"$WORK/wrk.err")
    kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
    rss_end=$(rss_kb)
    rss10=$(awk 'NR == 6 {print $2}' "$WORK/rss.log")
    rss_max=$(awk '$2 > m {m = $2} END {print m + 0}' "$WORK/rss.log")
    rps=$(awk '/Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out"); sockerr=${sockerr:-0}
    verdict=pass
    if [[ "$non2xx" != 0 || "$sockerr" != 0 ]]; then verdict=FAIL; FAILED=1; fi
    if awk -v a="$rss10" -v b="$rss_end" -v s="$MEM_SLACK" 'BEGIN {exit !(b > a * (1 + s / 100))}'; then
        verdict="FAIL (memory grew)"; FAILED=1
    fi
    printf '\n== %s: %s at %s connections, %s wrk threads, analytics routes %s ==\n' \
        "$name" "$DURATION" "$CONNECTIONS" "$THREADS" "$([[ $ANALYTICS == 1 ]] && echo on || echo off)"
    grep -E 'Latency|Req/Sec|requests in|50%|99%' <<<"$out" || true
    printf 'requests/s %s, p99 %s, non-2xx %s, socket errors %s\n' "$rps" "$p99" "$non2xx" "$sockerr"
    printf 'server RSS: %d MB after warm-up, %d MB at 10 s, %d MB at the end, %d MB peak\n' \
        $((rss0 / 1024)) $((rss10 / 1024)) $((rss_end / 1024)) $((rss_max / 1024))
    printf 'verdict: %s\n' "$verdict"
    if [[ -s "$WORK/wrk.err" ]]; then echo "first refusals:"; head -5 "$WORK/wrk.err"; fi
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
run_backend SQLite ""
run_postgres custodian_soak
exit "$FAILED"
