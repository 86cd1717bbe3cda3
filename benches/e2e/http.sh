#!/usr/bin/env bash
# The HTTP destination into `aorta bench http-sink` (a receiver answering 200 to everything),
# one route, default queue settings (one worker, one connection) (docs/benchmarks.md).
#
#   benches/e2e/http.sh drain [ROUNDS]      delivery alone: ingest with the destination paused,
#                                           then time the drain
#   benches/e2e/http.sh e2e [ROUNDS]        256 connections ingesting while delivering
#   RATE=12000 benches/e2e/http.sh sustained [ROUNDS]
#                                           the same, the 256 connections paced to offer RATE
#                                           msgs/s in all (N messages, default 4 s worth)
#
# CONCURRENCY=N sends with N workers and connections, order kept per patient (PID-3-1);
# PATIENTS=N spreads the messages over N patients (default 1000 with CONCURRENCY > 1).
# HTTP2=true sends over one HTTP/2 connection (h2c), CONCURRENCY requests on it at once.
# DELAY_MS=N makes the sink take N ms per answer (a receiver doing work per message).
# AORTA_OLD=path runs a second engine build in each round too, alternately with AORTA (the
# release build by default); AORTA_CLIENT=path keeps the load generator and the sink the same.
# Needs the sqlite3 command. Rates come from the journal: drain = deliveries / (last sent_at -
# first sent_at); e2e and sustained = deliveries / (last sent_at - first received_at).
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
new=${AORTA:-$root/target/release/aorta}
client=${AORTA_CLIENT:-$new}
builds=("$new")
[ -n "${AORTA_OLD:-}" ] && builds=("$AORTA_OLD" "$new")
work=$(mktemp -d "${TMPDIR:-/tmp}/aorta-http-bench.XXXXXX")
pid=
sink=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$sink" ] && kill "$sink" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/routes"
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
[destinations.h]
kind = "http"
url = "http://127.0.0.1:18080/in/\${MSH-9-1}"
concurrency = ${CONCURRENCY:-1}
http2 = ${HTTP2:-false}
$([ "${CONCURRENCY:-1}" -gt 1 ] && echo 'order_key = "PID-3-1"')
[listeners.in]
kind = "mllp"
bind = "127.0.0.1:12575"
EOF
printf 'name = "all"\nfrom = ["in"]\n[[to]]\ndestination = "h"\n' >"$work/routes/all.toml"
patients=${PATIENTS:-0}
[ "${CONCURRENCY:-1}" -gt 1 ] && patients=${PATIENTS:-1000}
load=(--patients "$patients")
for f in "$root"/routes/fixtures/*.hl7; do load+=(--file "$f"); done

sink_args=(--bind 127.0.0.1:18080)
[ "${HTTP2:-false}" = true ] && sink_args+=(--http2)
[ -n "${DELAY_MS:-}" ] && sink_args+=(--delay-ms "$DELAY_MS")
"$client" bench http-sink "${sink_args[@]}" >/dev/null 2>&1 &
sink=$!
sleep 0.5

# shellcheck source=benches/e2e/common.sh
. "$root/benches/e2e/common.sh"

for round in $(seq 1 "$rounds"); do
    line="round $round:"
    for aorta in "${builds[@]}"; do
        rm -rf "$work/data"
        name=$(basename "$(dirname "$(dirname "$aorta")")")/$(basename "$aorta")
        [ "$aorta" = "$new" ] && name=new
        [ "$aorta" = "${AORTA_OLD:-}" ] && name=old
        if [ "$mode" = drain ]; then
            start; stop
            sqlite3 "$work/data/journal.db" "INSERT OR IGNORE INTO paused VALUES ('h')"
            start
            "$client" bench mllp --addr 127.0.0.1:12575 --connections 64 --messages "$n" "${load[@]}" >/dev/null
            stop
            sqlite3 "$work/data/journal.db" "DELETE FROM paused"
            start; drained; stop
            r=$(sqlite3 "$work/data/journal.db" "SELECT CAST(count(*) * 1e6 / (max(sent_at) - min(sent_at)) AS INT) FROM deliveries WHERE state = 'sent'")
            line="$line $name drain $r msgs/s;"
        else
            start
            ingest=$("$client" bench mllp --addr 127.0.0.1:12575 --connections 256 --messages "$n" --rate "$rate" "${load[@]}" | grep -Eo '[0-9]+ msgs/s' | head -1)
            drained; stop
            r=$(sqlite3 "$work/data/journal.db" "SELECT CAST(count(*) * 1e6 / ((SELECT max(sent_at) FROM deliveries) - (SELECT min(received_at) FROM messages)) AS INT) FROM deliveries WHERE state = 'sent'")
            p99=$(sqlite3 "$work/data/journal.db" "SELECT (d.sent_at - m.received_at) / 1000 FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY 1 LIMIT 1 OFFSET (SELECT count(*) * 99 / 100 FROM deliveries)")
            line="$line $name ingest $ingest, end to end $r msgs/s, p99 $p99 ms;"
        fi
    done
    echo "$line"
done
