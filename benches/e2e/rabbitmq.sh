#!/usr/bin/env bash
# The RabbitMQ destination against lapin's own publisher, in the same run (docs/benchmarks.md).
#
#   benches/e2e/rabbitmq.sh drain [ROUNDS]   delivery alone: ingest with the destination paused,
#                                            then time the drain
#   benches/e2e/rabbitmq.sh e2e [ROUNDS]     256 connections ingesting while delivering
#   RATE=12000 benches/e2e/rabbitmq.sh sustained [ROUNDS]
#                                            the same, the 256 connections paced to offer RATE
#                                            msgs/s in all (N messages, default 4 s worth)
#
# Each round first runs `aorta bench amqp --keep` (the broker's raw rate, and the bound queue
# `aorta.bench.raw` Aorta publishes into) three times — awaiting each publish's write, the
# issue's reference; with `--queue-writes`, as the destination publishes; and with `--file`, the
# first fixture with the properties the destination gives it (message id, content type, two
# headers), as the broker receives Aorta's messages — then the engine.
# CONCURRENCY=N publishes with N workers (order kept per patient, PID-3-1).
# Needs RabbitMQ on 127.0.0.1:5672 (guest/guest), the sqlite3 command, and a release build
# (AORTA=path overrides it; AORTA_CLIENT=path the load generator).
# Rates come from the journal: drain = deliveries / (last sent_at - first sent_at);
# e2e and sustained = deliveries / (last sent_at - first received_at). Sustained: while the
# rate printed stays near RATE (and the p99 small), the engine keeps up with that load.
set -euo pipefail
mode=${1:-drain}
rounds=${2:-3}
rate=0
n=${N:-20000}
if [ "$mode" = sustained ]; then
    rate=${RATE:?RATE=msgs/s is needed for sustained}
    n=${N:-$((rate * 4))}
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
aorta=${AORTA:-$root/target/release/aorta}
# The load generator; AORTA_CLIENT keeps it the same while AORTA compares engine builds.
client=${AORTA_CLIENT:-$aorta}
work=$(mktemp -d)
pid=
# Only the engine this script started: `kill 0` would signal the whole process group.
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/routes"
echo "amqp://guest:guest@127.0.0.1:5672/%2f" >"$work/amqp-url"
cat >"$work/aorta.toml" <<EOF
[store]
path = "$work/data/journal.db"
[admin]
bind = "127.0.0.1:19090"
[logging]
level = "warn"
[routes]
dir = "$work/routes"
watch = false
[destinations.q]
kind = "rabbitmq"
url = "file:$work/amqp-url"
exchange = "aorta.bench"
exchange_kind = "topic"
declare = true
routing_key = "raw.\${MSH-9-1}"
concurrency = ${CONCURRENCY:-1}
$([ "${CONCURRENCY:-1}" -gt 1 ] && echo 'order_key = "PID-3-1"')
[listeners.in]
kind = "mllp"
bind = "127.0.0.1:12575"
EOF
printf 'name = "all"\nfrom = ["in"]\n[[to]]\ndestination = "q"\n' >"$work/routes/all.toml"
# With several workers the messages go to 1,000 patients (PATIENTS=N), so order keys spread.
patients=${PATIENTS:-0}
[ "${CONCURRENCY:-1}" -gt 1 ] && patients=${PATIENTS:-1000}
files=(--patients "$patients")
for f in "$root"/routes/fixtures/*.hl7; do files+=(--file "$f"); done

# shellcheck source=benches/e2e/common.sh
. "$root/benches/e2e/common.sh"

for round in $(seq 1 "$rounds"); do
    rm -rf "$work/data"
    # Empties the queue of the last round's messages first, so that neither reference pays
    # for the broker dropping them.
    "$client" bench amqp --keep --messages 1000 >/dev/null
    queued=$("$client" bench amqp --keep --queue-writes --messages "$n" | grep -Eo '[0-9]+ msgs/s' | head -1)
    raw=$("$client" bench amqp --keep --messages "$n" | grep -Eo '[0-9]+ msgs/s' | head -1)
    like=$("$client" bench amqp --keep --messages "$n" --file "$root/routes/fixtures/adt-a01.hl7" | grep -Eo '[0-9]+ msgs/s' | head -1)
    if [ "$mode" = drain ]; then
        start; stop
        sqlite3 "$work/data/journal.db" "INSERT OR IGNORE INTO paused VALUES ('q')"
        start
        "$client" bench mllp --addr 127.0.0.1:12575 --connections 64 --messages "$n" "${files[@]}" >/dev/null
        stop
        sqlite3 "$work/data/journal.db" "DELETE FROM paused"
        start; drained; stop
        rate=$(sqlite3 "$work/data/journal.db" "SELECT CAST(count(*) * 1e6 / (max(sent_at) - min(sent_at)) AS INT) FROM deliveries WHERE state = 'sent'")
        echo "round $round: lapin alone $raw (writes queued: $queued; with Aorta's properties: $like), Aorta drain $rate msgs/s"
    else
        start
        ingest=$("$client" bench mllp --addr 127.0.0.1:12575 --connections 256 --messages "$n" --rate "$rate" "${files[@]}" | grep -Eo '[0-9]+ msgs/s' | head -1)
        drained; stop
        rate=$(sqlite3 "$work/data/journal.db" "SELECT CAST(count(*) * 1e6 / ((SELECT max(sent_at) FROM deliveries) - (SELECT min(received_at) FROM messages)) AS INT) FROM deliveries WHERE state = 'sent'")
        p99=$(sqlite3 "$work/data/journal.db" "SELECT (d.sent_at - m.received_at) / 1000 FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY 1 LIMIT 1 OFFSET (SELECT count(*) * 99 / 100 FROM deliveries)")
        echo "round $round: lapin alone $raw (writes queued: $queued; with Aorta's properties: $like), ingest $ingest, Aorta end to end $rate msgs/s, receipt -> sent p99 $p99 ms"
    fi
done
