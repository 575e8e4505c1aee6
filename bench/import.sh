#!/usr/bin/env bash
# Import benchmarks (issue 17): rows/s and peak RSS of `custodian import`
# per backend, on the real files and on Online Retail repeated 10 times
# (invoice numbers and customer ids shifted per copy, so every row is new).
#
#   cargo build --release
#   PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres bench/import.sh \
#       online_retail_uci.csv \
#       cdnow_master.csv
#
# Without PG_ADMIN_URL only SQLite is measured. Generated files and
# databases live in a temporary directory removed at the end.
set -euo pipefail
retail=${1:?online retail csv}
cdnow=${2:?cdnow csv}
bin=${BIN:-target/release/custodian}
times=${TIMES:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Online Retail ×N: copy k shifts invoice numbers by k·10^6 (keeping the C
# prefix of cancellations) and customer ids by k·10^5.
big="$work/retail_x$times.csv"
awk -v n="$times" 'NR == FNR { if (FNR == 1) print; next }
  FNR == 1 { next }
  { lines[++c] = $0 }
  END {
    for (k = 0; k < n; k++) for (i = 1; i <= c; i++) {
      line = lines[i]
      split(line, f, ",")
      inv = f[1]; pre = ""
      if (substr(inv, 1, 1) == "C") { pre = "C"; inv = substr(inv, 2) }
      if (inv ~ /^[0-9]+$/) inv = inv + k * 1000000
      sub(/^[^,]*/, pre inv, line)
      if (k > 0 && match(line, /,[0-9]+(\.0)?,[^,]*$/)) {
        tail = substr(line, RSTART + 1); split(tail, t, ",")
        id = t[1]; sub(/\.0$/, "", id)
        line = substr(line, 1, RSTART) (id + k * 100000) "," t[2]
      }
      print line
    }
  }' "$retail" "$retail" > "$big"

run() { # label, url, args…
  local label=$1 url=$2; shift 2
  local out
  out=$( { DATABASE_URL="$url" CUSTODIAN_DATA_DIR="$work/data" CUSTODIAN_LOG=warn \
      /usr/bin/time -f 'peak_rss_kb=%M wall_s=%e' "$bin" "$@" --quiet; } 2>&1 )
  local rows rss wall
  rows=$(grep -o '^import finished: [0-9]*' <<<"$out" | grep -o '[0-9]*$' || true)
  rss=$(grep -o 'peak_rss_kb=[0-9]*' <<<"$out" | cut -d= -f2)
  wall=$(grep -o 'wall_s=[0-9.]*' <<<"$out" | cut -d= -f2)
  printf '%-44s %9s rows %7s s %9.0f rows/s  peak RSS %6d MB\n' "$label" "${rows:-?}" "$wall" \
    "$(awk -v r="${rows:-0}" -v w="$wall" 'BEGIN { print (w > 0 ? r / w : 0) }')" "$((rss / 1024))"
}

backend() { # name, url
  local name=$1 url=$2
  run "$name online-retail" "$url" import online-retail "$retail"
  run "$name online-retail re-run" "$url" import online-retail "$retail"
  run "$name online-retail x$times" "$url" import online-retail "$big"
  run "$name cdnow" "$url" import cdnow "$cdnow"
}

sqlite_url() { rm -rf "$work/data"; mkdir -p "$work/data"; echo "sqlite://$work/data/$1.db?mode=rwc"; }
backend sqlite "$(sqlite_url plain)"
run "sqlite online-retail --synthesize-profiles" "$(sqlite_url synth)" \
  import online-retail --synthesize-profiles "$retail"

if [[ -n "${PG_ADMIN_URL:-}" ]]; then
  db="custodian_import_bench_$$"
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null
  pg="${PG_ADMIN_URL%/*}/$db"
  backend postgres "$pg"
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE $db" >/dev/null
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE ${db}_s" >/dev/null
  run "postgres online-retail --synthesize-profiles" "${PG_ADMIN_URL%/*}/${db}_s" \
    import online-retail --synthesize-profiles "$retail"
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE ${db}_s" >/dev/null
fi
