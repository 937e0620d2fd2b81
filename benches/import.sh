#!/usr/bin/env bash
# CSV import through POST /api/v1/lists/{slug}/subscribers/import, measured from outside: rows a
# second and the server's peak memory (VmHWM) for a well-formed file of ROWS rows, then for a
# hostile upload (one field of HOSTILE_MB megabytes, streamed without a length) to show that
# memory stays flat whatever arrives. With SIGNUPS=1, wrk posts signups during the import and
# prints their latency: the request path must not wait behind the import.
#
#   bash benches/import.sh                       # SQLite (a fresh file)
#   BENCH_DB=postgres bash benches/import.sh     # PostgreSQL on 127.0.0.1:5432 (a fresh database)
#
# ROWS (default 100000), HOSTILE_MB (default 1024), SIGNUPS (0), BENCH_BIN=path (a binary built
# elsewhere, to compare two commits back to back). Needs curl; wrk for SIGNUPS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/letterhead/target}"
ROWS="${ROWS:-100000}"; HOSTILE_MB="${HOSTILE_MB:-1024}"; PORT=3998

if [ -z "${BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/letterhead}"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

if [ "${BENCH_DB:-sqlite}" = postgres ]; then
  DB="letterhead_import_$$"
  psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $DB"
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
  trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"' EXIT
else
  DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc"
fi
cat > "$WORK/env" <<ENV
DATABASE_URL=$DATABASE_URL
LISTEN_ADDR=127.0.0.1:$PORT
PUBLIC_URL=http://127.0.0.1:$PORT
MAIL_TRANSPORT=file://$WORK/mail
ORG_NAME="Bench Ltd"
ORG_POSTAL_ADDRESS="1 Bench Street, 12345 Bench City"
ORG_CONTACT_EMAIL=privacy@example.com
MAIL_FROM=news@example.com
RATE_LIMIT_SIGNUP_PER_MINUTE=100000000
RATE_LIMIT_PUBLIC_PER_MINUTE=100000000
RATE_LIMIT_API_PER_MINUTE=100000000
IMPORT_MAX_MB=$((HOSTILE_MB * 2))
RUST_LOG=warn
ENV
"$BIN" --env-file "$WORK/env" serve 2>"$WORK/serve.log" &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
KEY=$("$BIN" --env-file "$WORK/env" api-key create --name bench | tail -n 1)
curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{"slug":"weekly","name":"Weekly"}' "http://127.0.0.1:$PORT/api/v1/lists" >/dev/null
IMPORT_URL="http://127.0.0.1:$PORT/api/v1/lists/weekly/subscribers/import"
rss() { awk -v k="$1:" '$1 == k {print int($2 / 1024) " MB"}' "/proc/$SERVER/status"; }

awk -v n="$ROWS" 'BEGIN { print "email,name,consented_at,consent_source";
  for (i = 0; i < n; i++) printf "reader%d@example.org,Reader %d,2025-01-01T00:00:00Z,spring fair 2024\n", i, i }' \
  > "$WORK/people.csv"
echo "server after start: $(rss VmRSS)"

if [ "${SIGNUPS:-0}" = 1 ]; then
  cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/subscribe", nil, "email=during" .. counter .. "-" .. math.random(1e9) .. "%40example.org&lists=weekly&consent=on&age_confirmed=on")
end
LUA
  wrk -t1 -c4 -d600s --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT" > "$WORK/wrk.txt" &
  WRK=$!
  sleep 1
fi
start=$(date +%s.%N)
curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: text/csv' \
  --data-binary @"$WORK/people.csv" "$IMPORT_URL" > "$WORK/report.json"
end=$(date +%s.%N)
if [ -n "${WRK:-}" ]; then kill -INT "$WRK"; wait "$WRK" || true; echo "signups during the import:"; grep -A6 "Latency Distribution" "$WORK/wrk.txt"; grep "Requests/sec" "$WORK/wrk.txt"; fi
python3 - "$start" "$end" "$ROWS" "$WORK/report.json" <<'PY'
import json, sys
start, end, rows = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
report = json.load(open(sys.argv[4]))
print(f"import of {rows} rows: {end - start:.1f} s, {rows / (end - start):,.0f} rows/s; "
      f"imported {report['imported']}, skipped {report['skipped']}, errors {report['error_count']}")
PY
echo "server peak after the import: $(rss VmHWM), now $(rss VmRSS)"

# One field of HOSTILE_MB MB, streamed without a Content-Length.
{ echo "email,name"; printf 'a@example.org,"'; head -c "$((HOSTILE_MB * 1024 * 1024))" /dev/zero | tr '\0' 'x'; printf '"\n'; } |
  curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: text/csv' -H 'Transfer-Encoding: chunked' \
    -T - -X POST "$IMPORT_URL" > "$WORK/hostile.json"
echo "hostile upload (one ${HOSTILE_MB} MB field): $(cat "$WORK/hostile.json" | head -c 300)"
echo "server peak after it: $(rss VmHWM), now $(rss VmRSS)"
