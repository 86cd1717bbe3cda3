# Shared by the e2e bench scripts (sourced): start/stop the engine on $work/aorta.toml, count
# sent deliveries, wait until $n are sent (up to $drain_polls × 0.2 s).
start() {
    "$aorta" run --config "$work/aorta.toml" >>"$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do
        (exec 3<>/dev/tcp/127.0.0.1/12575) 2>/dev/null && return 0
        sleep 0.1
    done
    echo "the engine did not start; see $work/log" >&2
    exit 1
}
stop() { kill "$pid"; wait "$pid" || true; pid=; }
sent() { sqlite3 "$work/data/journal.db" "SELECT count(*) FROM deliveries WHERE state = 'sent'" 2>/dev/null || echo 0; }
drained() {
    for _ in $(seq 1 "${drain_polls:-600}"); do
        [ "$(sent)" -ge "$n" ] && return 0
        sleep 0.2
    done
    echo "not all deliveries were sent" >&2
    exit 1
}
