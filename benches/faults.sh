#!/usr/bin/env bash
# Fault test, long form: a campaign of RECIPIENTS (20,000) to Postfix's smtp-sink while a
# `letterhead serve` process is killed with SIGKILL every INTERVAL seconds, KILLS times (5), and
# started again at once; then the count per recipient from the sink's dump. Passes when no one
# is missing and the duplicates stay within the stated bound (24 x DELIVERY_CONCURRENCY per
# crash, DeliveryConfig::unrecorded_at_most).
#
#   bash benches/faults.sh                                   # SQLite, one instance
#   BENCH_DB=postgres bash benches/faults.sh                 # PostgreSQL on 127.0.0.1:5432
#   BENCH_DB=postgres INSTANCES=2 bash benches/faults.sh     # two instances; kills alternate
#
# RECIPIENTS, KILLS, INTERVAL (seconds, default 3), BENCH_BIN=path (a binary built elsewhere).
# Needs curl, python3 and smtp-sink (Debian package postfix).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/letterhead/target}"
RECIPIENTS="${RECIPIENTS:-20000}"; KILLS="${KILLS:-5}"; INTERVAL="${INTERVAL:-3}"
INSTANCES="${INSTANCES:-1}"; CONCURRENCY=8; SINK_PORT=2526; FIRST_PORT=3990

if [ -z "${BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/letterhead}"
WORK=$(mktemp -d)
chmod 777 "$WORK" # smtp-sink writes its dump as nobody
cleanup() {
  kill -9 $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
  if [ -n "${PGDB:-}" ]; then psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)"; fi
}
trap cleanup EXIT

if [ "${BENCH_DB:-sqlite}" = postgres ]; then
  PGDB="letterhead_faults_$$"
  psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $PGDB"
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$PGDB"
else
  [ "$INSTANCES" = 1 ] || { echo "two instances share a PostgreSQL database" >&2; exit 1; }
  DATABASE_URL="sqlite://$WORK/faults.db?mode=rwc"
fi

smtp-sink -u nobody -D "$WORK/sink.dump" "127.0.0.1:$SINK_PORT" 256 &
cat > "$WORK/env" <<ENV
DATABASE_URL=$DATABASE_URL
PUBLIC_URL=http://127.0.0.1:$FIRST_PORT
MAIL_TRANSPORT=smtp://127.0.0.1:$SINK_PORT
ORG_NAME="Bench Ltd"
ORG_POSTAL_ADDRESS="1 Bench Street, 12345 Bench City"
ORG_CONTACT_EMAIL=privacy@example.com
MAIL_FROM=news@example.com
DELIVERY_CONCURRENCY=$CONCURRENCY
DELIVERY_POLL_MS=200
RATE_LIMIT_API_PER_MINUTE=100000000
RUST_LOG=warn
ENV

declare -a PIDS
start() { # instance number
  LISTEN_ADDR="127.0.0.1:$((FIRST_PORT + $1))" "$BIN" --env-file "$WORK/env" serve 2>>"$WORK/serve$1.log" &
  PIDS[$1]=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$((FIRST_PORT + $1))/healthz" >/dev/null && return; sleep 0.05; done
  echo "instance $1 did not start" >&2; exit 1
}
for i in $(seq 0 $((INSTANCES - 1))); do start "$i"; done
API="http://127.0.0.1:$FIRST_PORT/api/v1"
KEY=$("$BIN" --env-file "$WORK/env" api-key create --name faults | tail -n 1)
auth=(-H "Authorization: Bearer $KEY")
curl -sf "${auth[@]}" -H 'Content-Type: application/json' -d '{"slug":"weekly","name":"Weekly"}' "$API/lists" >/dev/null
awk -v n="$RECIPIENTS" 'BEGIN { print "email,name,consented_at,consent_source";
  for (i = 0; i < n; i++) printf "reader%d@example.org,Reader %d,2025-01-01T00:00:00Z,spring fair 2024\n", i, i }' \
  > "$WORK/people.csv"
curl -sf "${auth[@]}" -H 'Content-Type: text/csv' --data-binary @"$WORK/people.csv" \
  "$API/lists/weekly/subscribers/import" >/dev/null
ID=$(curl -sf "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"subject":"Faults","lists":["weekly"],"markdown":"Hello {{ name }}"}' "$API/campaigns" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sent() { grep -c '^X-Rcpt-Args:' "$WORK/sink.dump" 2>/dev/null || echo 0; }
started=$(date +%s.%N)
curl -sf "${auth[@]}" -X POST "$API/campaigns/$ID/send" >/dev/null

for k in $(seq 1 "$KILLS"); do
  sleep "$INTERVAL"
  victim=$(( (k - 1) % INSTANCES ))
  kill -9 "${PIDS[$victim]}"; wait "${PIDS[$victim]}" 2>/dev/null || true
  echo "kill $k of instance $victim after $(sent) messages at the sink"
  start "$victim"
done

status() {
  curl -sf "${auth[@]}" "$API/campaigns/$ID" |
    python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["status"], c.get("sent"), c.get("failed"))'
}
for _ in $(seq 1 1200); do
  read -r state _ _ < <(status)
  [ "$state" = sent ] && break
  sleep 0.5
done
finished=$(date +%s.%N)
sleep 1
echo "campaign: $(status) (status, sent, failed)"
python3 - "$WORK/sink.dump" "$RECIPIENTS" "$KILLS" "$CONCURRENCY" "$started" "$finished" "${BENCH_DB:-sqlite}" "$INSTANCES" <<'PY'
import collections, sys
dump, n, kills, concurrency, started, finished, db, instances = sys.argv[1:]
n, kills, concurrency = int(n), int(kills), int(concurrency)
counts = collections.Counter()
with open(dump, errors="replace") as f:
    for line in f:
        if line.startswith("X-Rcpt-Args:"):
            counts[line.split("<", 1)[1].split(">", 1)[0]] += 1
expected = {f"reader{i}@example.org" for i in range(n)}
missing = len(expected - counts.keys())
duplicates = sum(c - 1 for c in counts.values())
bound = kills * 24 * concurrency
print(f"{db}, {instances} instance(s), {n} recipients, {kills} kills: "
      f"missing {missing}, duplicates {duplicates} (bound {bound}), "
      f"most to one person {max(counts.values(), default=0)}, "
      f"{float(finished) - float(started):.1f} s from send to finished")
sys.exit(0 if missing == 0 and duplicates <= bound else 1)
PY
