# Sourced by .ci/run: starts influxd (InfluxDB 1.x from Debian) on a free loopback port with
# its data, meta and WAL dirs in a temp dir, and exports GTX_INFLUX_URL for the tests.
start_influxd() {
  if [ -n "${GTX_INFLUX_URL:-}" ]; then return; fi
  INFLUX_DIR=$(mktemp -d)
  local port bind_port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  bind_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$INFLUX_DIR/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:${bind_port}"
[meta]
  dir = "${INFLUX_DIR}/meta"
[data]
  dir = "${INFLUX_DIR}/data"
  wal-dir = "${INFLUX_DIR}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:${port}"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
  influxd -config "$INFLUX_DIR/influxdb.conf" > "$INFLUX_DIR/influxd.log" 2>&1 &
  INFLUX_PID=$!
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:${port}/ping" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:${port}/ping" >/dev/null || { echo "influxd did not start:"; cat "$INFLUX_DIR/influxd.log"; return 1; }
  export GTX_INFLUX_URL="http://127.0.0.1:${port}"
  echo "influxd on ${GTX_INFLUX_URL} (state in ${INFLUX_DIR})"
}

stop_influxd() {
  if [ -n "${INFLUX_PID:-}" ]; then kill "$INFLUX_PID" 2>/dev/null || true; wait "$INFLUX_PID" 2>/dev/null || true; fi
  if [ -n "${INFLUX_DIR:-}" ]; then rm -rf "$INFLUX_DIR"; fi
}
