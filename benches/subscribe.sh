#!/usr/bin/env bash
# Load test of POST /subscribe: distinct new addresses, each a full signup (subscriber,
# subscription, consent event, confirmation in the outbox) while the worker sends the
# confirmations to Postfix's smtp-sink. The per-IP signup limit is raised for the run.
#
#   bash benches/subscribe.sh                      # SQLite (a fresh file)
#   BENCH_DB=postgres bash benches/subscribe.sh    # PostgreSQL on 127.0.0.1:5432 (a fresh database)
#
# Needs wrk and smtp-sink (Debian packages wrk and postfix). DURATION, CONNECTIONS, THREADS tune it;
# BENCH_BIN=path runs that binary instead of building this checkout. ERASURES_PER_SECOND=N also
# erases N people a second through the API during the measured run (each erasure is followed
# by the wipe of the database files), to see what erasures cost the signups around them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/letterhead/target}"
DURATION="${DURATION:-20s}"; CONNECTIONS="${CONNECTIONS:-64}"; THREADS="${THREADS:-1}"
PORT=3999; SMTP_PORT=2526
command -v wrk >/dev/null && command -v smtp-sink >/dev/null || {
  echo "needs wrk and smtp-sink: apt-get install wrk postfix" >&2; exit 1; }

# BENCH_BIN runs a binary built elsewhere (to compare two commits back to back).
if [ -z "${BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/letterhead}"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

if [ "${BENCH_DB:-sqlite}" = postgres ]; then
  DB="letterhead_bench_$$"
  psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $DB"
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
  trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"' EXIT
else
  DATABASE_URL="sqlite://$WORK/bench.db?mode=rwc"
fi

# smtp-sink refuses to run as root without a user to switch to.
SINK_USER=(); [ "$(id -u)" = 0 ] && SINK_USER=(-u nobody)
smtp-sink "${SINK_USER[@]}" "127.0.0.1:$SMTP_PORT" 1000 &
cat > "$WORK/env" <<ENV
DATABASE_URL=$DATABASE_URL
LISTEN_ADDR=127.0.0.1:$PORT
PUBLIC_URL=http://127.0.0.1:$PORT
MAIL_TRANSPORT=smtp://127.0.0.1:$SMTP_PORT
ORG_NAME="Bench Ltd"
ORG_POSTAL_ADDRESS="1 Bench Street, 12345 Bench City"
ORG_CONTACT_EMAIL=privacy@example.com
MAIL_FROM=news@example.com
NOTICE_FROM=notices@example.com
RATE_LIMIT_SIGNUP_PER_MINUTE=100000000
RATE_LIMIT_PUBLIC_PER_MINUTE=100000000
RATE_LIMIT_API_PER_MINUTE=100000000
RUST_LOG=warn
ENV
"$BIN" --env-file "$WORK/env" serve 2>"$WORK/serve.log" &
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
KEY=$("$BIN" --env-file "$WORK/env" api-key create --name bench | tail -n 1)
curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d '{"slug":"weekly","name":"Weekly"}' "http://127.0.0.1:$PORT/api/v1/lists" >/dev/null

cat > "$WORK/post.lua" <<'LUA'
-- Every address is new: the run's name (the script's argument), the thread and a counter.
local counter = 0
local id = "run"
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("thread_no", threads) end
init = function(args) id = (args[1] or id) .. "t" .. tostring(thread_no) end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
request = function()
  counter = counter + 1
  local body = "email=r" .. id .. "x" .. counter .. "%40example.org&list=weekly&consent=yes&age_confirmed=yes"
  return wrk.format(nil, "/subscribe", nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("accepted %d requests (%d errors, %d non-2xx) in %.1f s: %.0f req/s, p50 %.2f ms, p99 %.2f ms\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
# A short warm-up fills the tables, then PostgreSQL gets the statistics autovacuum would give
# it within its first minute (as pgbench vacuums before a run): planned on the empty tables'
# statistics, lookups by subscriber scan every pending row instead of using their index.
wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -s "$WORK/post.lua" "http://127.0.0.1:$PORT" -- warmup >/dev/null
if [ "${BENCH_DB:-sqlite}" = postgres ]; then
  psql -h 127.0.0.1 -U postgres -d "$DB" -qc "VACUUM ANALYZE"
fi
ERASURES_PER_SECOND="${ERASURES_PER_SECOND:-0}"
if [ "$ERASURES_PER_SECOND" != 0 ]; then
  # People from the warm-up, erased one by one at the given rate while wrk runs.
  curl -sf -H "Authorization: Bearer $KEY" \
    "http://127.0.0.1:$PORT/api/v1/subscribers?list=weekly&status=pending&per_page=1000" \
    | grep -o '"uuid":"[0-9a-f-]*"' | cut -d'"' -f4 > "$WORK/ids"
  PAUSE=$(awk "BEGIN { print 1 / $ERASURES_PER_SECOND }")
  (while read -r id; do
     curl -s -o /dev/null -w '%{http_code}\n' -X DELETE -H "Authorization: Bearer $KEY" \
       "http://127.0.0.1:$PORT/api/v1/subscribers/$id" >> "$WORK/erased"
     sleep "$PAUSE"
   done < "$WORK/ids") &
  ERASER=$!
fi
echo "POST /subscribe on ${BENCH_DB:-sqlite}, $CONNECTIONS connections, $DURATION:"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT" -- measured | tail -n 1
if [ "$ERASURES_PER_SECOND" != 0 ]; then
  kill "$ERASER" 2>/dev/null || true
  echo "erasures during the run: $(grep -c '^204' "$WORK/erased" || true) (other answers: $(grep -vc '^204' "$WORK/erased" || true))"
fi
echo "server warnings during the run: $(grep -c WARN "$WORK/serve.log" || true)"
