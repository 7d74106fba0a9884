#!/usr/bin/env bash
# The quickstart: builds Postern, starts an edge with its embedded store in .quickstart/, and
# creates a tunnel through the control API.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
state="$root/.quickstart"
cd "$root"

echo "==> building (release)"
cargo build --release --locked -p postern-edge

mkdir -p "$state"
if [ -f "$state/edge.pid" ] && kill -0 "$(cat "$state/edge.pid")" 2>/dev/null; then
  kill "$(cat "$state/edge.pid")" && sleep 1
fi
echo "==> starting the edge (logs: $state/edge.log)"
./target/release/postern-edge --data-dir "$state/data" \
  --api-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --https-listen 127.0.0.1:0 \
  --tunnel-listen 127.0.0.1:0 --dns-listen 127.0.0.1:0 \
  >"$state/ready.json" 2>"$state/edge.log" &
echo $! >"$state/edge.pid"
for _ in $(seq 1 100); do [ -s "$state/ready.json" ] && break; sleep 0.1; done
api=$(sed -E 's/.*"api":"([^"]+)".*/\1/' "$state/ready.json")
token=$(cat "$state/data/admin-token")
echo "==> creating a tunnel through http://$api"
curl -sf -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"quickstart","labels":{"release":"stable"}}' "http://$api/v1/tunnels" || true
echo
curl -sf -H "Authorization: Bearer $token" "http://$api/v1/tunnels"
echo
if [ "${POSTERN_QUICKSTART_EXIT:-${CI:-}}" != "" ]; then
  kill "$(cat "$state/edge.pid")"; rm -f "$state/edge.pid"
  echo "==> stopped (CI)"
else
  echo "==> the edge keeps running (pid $(cat "$state/edge.pid")); stop it with: kill \$(cat $state/edge.pid)"
fi
