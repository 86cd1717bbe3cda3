#!/usr/bin/env bash
# The file destination, one file per delivery: grouped writes (one sync per leased batch,
# the default) against one file at a time (what a `rate_limit` makes the worker do), in the
# same run, alternately (docs/benchmarks.md).
#
#   benches/e2e/file.sh drain [ROUNDS]   delivery alone: ingest with the destination paused,
#                                        then time the drain
#   benches/e2e/file.sh e2e [ROUNDS]     256 connections ingesting while delivering
#
# Needs the sqlite3 command and a release build (AORTA=path overrides it; AORTA_CLIENT=path
# the load generator). N=messages
# (default 20000). Rates come from the journal: drain = deliveries / (last sent_at - first
# sent_at); e2e = deliveries / (last sent_at - first received_at). The files go under a temp
# dir (DIR=path overrides it): file creation speed depends on the filesystem, see the docs.
set -euo pipefail
mode=${1:-drain}
rounds=${2:-3}
n=${N:-20000}
root=$(cd "$(dirname "$0")/../.." && pwd)
aorta=${AORTA:-$root/target/release/aorta}
# The load generator; AORTA_CLIENT keeps it the same while AORTA compares engine builds.
client=${AORTA_CLIENT:-$aorta}
work=$(mktemp -d "${DIR:-${TMPDIR:-/tmp}}/aorta-file-bench.XXXXXX")
pid=
# Only the engine this script started: `kill 0` would signal the whole process group.
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
files=()
for f in "$root"/routes/fixtures/*.hl7; do files+=(--file "$f"); done

# config VARIANT ROUND: writes $work/aorta.toml for one run.
config() {
    local limit=""
    # Any rate limit sends one delivery after the other; this one never waits.
    [ "$1" = one ] && limit="rate_limit = 1000000000"
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
[destinations.f]
kind = "file"
directory = "$work/out-$1-$2"
$limit
[listeners.in]
kind = "mllp"
bind = "127.0.0.1:12575"
EOF
    printf 'name = "all"\nfrom = ["in"]\n[[to]]\ndestination = "f"\n' >"$work/routes/all.toml"
}

drain_polls=1500
# shellcheck source=benches/e2e/common.sh
. "$root/benches/e2e/common.sh"

for round in $(seq 1 "$rounds"); do
    line="round $round:"
    for variant in one grouped; do
        rm -rf "$work/data"
        config "$variant" "$round"
        if [ "$mode" = drain ]; then
            start; stop
            sqlite3 "$work/data/journal.db" "INSERT OR IGNORE INTO paused VALUES ('f')"
            start
            "$client" bench mllp --addr 127.0.0.1:12575 --connections 64 --messages "$n" "${files[@]}" >/dev/null
            stop
            sqlite3 "$work/data/journal.db" "DELETE FROM paused"
            start; drained; stop
            rate=$(sqlite3 "$work/data/journal.db" "SELECT CAST(count(*) * 1e6 / (max(sent_at) - min(sent_at)) AS INT) FROM deliveries WHERE state = 'sent'")
            line="$line $variant $rate msgs/s;"
        else
            start
            ingest=$("$client" bench mllp --addr 127.0.0.1:12575 --connections 256 --messages "$n" "${files[@]}" | grep -Eo '[0-9]+ msgs/s' | head -1)
            drained; stop
            rate=$(sqlite3 "$work/data/journal.db" "SELECT CAST(count(*) * 1e6 / ((SELECT max(sent_at) FROM deliveries) - (SELECT min(received_at) FROM messages)) AS INT) FROM deliveries WHERE state = 'sent'")
            p99=$(sqlite3 "$work/data/journal.db" "SELECT (d.sent_at - m.received_at) / 1000 FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY 1 LIMIT 1 OFFSET (SELECT count(*) * 99 / 100 FROM deliveries)")
            line="$line $variant: ingest $ingest, end to end $rate msgs/s, p99 $p99 ms;"
        fi
        [ "$(ls "$work/out-$variant-$round" | wc -l)" -ge "$n" ] || { echo "files missing in out-$variant-$round" >&2; exit 1; }
    done
    echo "$line"
done
