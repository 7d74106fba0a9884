#!/usr/bin/env bash
# The quickstart, in one command: build Postern, start an edge with its embedded store, install
# the provider for an offline `terraform init`, apply examples/quickstart, start a connector with
# the token from `terraform output`, and send a request through the edge to a private origin.
#
#   examples/quickstart/run.sh          run it (again: it picks up where the last run left off)
#   examples/quickstart/run.sh --stop   stop the edge and the connector
#   examples/quickstart/run.sh --clean  stop them and delete .quickstart/ (state, logs, keys)
#
# POSTERN_QUICKSTART_DIR puts the state elsewhere than .quickstart/.
#
# With CI=true or POSTERN_QUICKSTART_EXIT=1 it stops everything after the request.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
state="${POSTERN_QUICKSTART_DIR:-$root/.quickstart}"
# POSTERN_QUICKSTART_PROFILE=debug reuses debug builds (the test suite does, to save a release build).
profile="${POSTERN_QUICKSTART_PROFILE:-release}"
bin="$root/target/$profile"
# The version is the workspace's ([workspace.package] version in Cargo.toml), and only that.
version="$(awk -F'"' '/^\[workspace\.package\]/ { p = 1; next } /^\[/ { p = 0 } p && /^version *=/ { print $2; exit }' "$root/Cargo.toml")"
hostname="hello.example.com"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

stop_all() {
  for name in connector edge; do
    local pidfile="$state/$name.pid"
    if [ -f "$pidfile" ]; then
      local pid
      pid="$(cat "$pidfile")"
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$pidfile"
    fi
  done
}

case "${1:-}" in
  --stop) stop_all; say "stopped"; exit 0 ;;
  --clean) stop_all; rm -rf "$state"; say "stopped and removed $state"; exit 0 ;;
  "") ;;
  *) fail "unknown argument $1 (use --stop or --clean)" ;;
esac

command -v cargo >/dev/null || fail "cargo is not on PATH: install Rust from https://rustup.rs"
command -v terraform >/dev/null || fail "terraform is not on PATH: install Terraform 1.10 or newer"
command -v curl >/dev/null || fail "curl is not on PATH"
[ -n "$version" ] || fail "no [workspace.package] version in $root/Cargo.toml"

say "1/6 building postern-edge, postern and terraform-provider-postern ($profile; the first build takes a few minutes)"
if [ "$profile" = release ]; then release=(--release); else release=(); fi
(cd "$root" && cargo build "${release[@]}" --locked -p postern-edge -p postern-runtime -p terraform-provider-postern)

mkdir -p "$state"
stop_all

say "2/6 starting the edge (store and CA in $state/data)"
# The first run lets the edge pick free ports; later runs reuse them, so the tunnel token in
# Terraform's state (which names the tunnel address) stays valid.
if [ -s "$state/ports.json" ]; then
  field() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\1/" "$state/ports.json"; }
  listen=(--api-listen "$(field api)" --http-listen "$(field http)" --https-listen "$(field https)" \
          --tunnel-listen "$(field tunnel)" --dns-listen "$(field dns)")
else
  listen=(--api-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --https-listen 127.0.0.1:0 \
          --tunnel-listen 127.0.0.1:0 --dns-listen 127.0.0.1:0)
fi
: >"$state/ready.json"
"$bin/postern-edge" --data-dir "$state/data" "${listen[@]}" >"$state/ready.json" 2>"$state/edge.log" &
echo $! >"$state/edge.pid"
for _ in $(seq 1 100); do [ -s "$state/ready.json" ] && break; sleep 0.1; done
[ -s "$state/ready.json" ] || { cat "$state/edge.log" >&2; fail "the edge did not start (log: $state/edge.log)"; }
cp "$state/ready.json" "$state/ports.json"
field() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\1/" "$state/ready.json"; }
api="$(field api)"; http="$(field http)"; https="$(field https)"; dns="$(field dns)"
admin_token="$(cat "$state/data/admin-token")"
echo "    control API http://$api · visitors http://$http and https://$https · DNS $dns"

say "3/6 installing the provider for an offline terraform init"
tf="$state/terraform"
mkdir -p "$tf"
cp "$root"/examples/quickstart/*.tf "$tf/"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux_amd64 ;; Linux-aarch64) platform=linux_arm64 ;;
  Darwin-arm64) platform=darwin_arm64 ;; Darwin-x86_64) platform=darwin_amd64 ;;
  *) fail "unsupported platform $(uname -s) $(uname -m)" ;;
esac
plugins="$tf/terraform.d/plugins/registry.terraform.io/postern/postern/$version/$platform"
mkdir -p "$plugins"
cp "$bin/terraform-provider-postern" "$plugins/terraform-provider-postern_v$version"
# A rebuilt provider no longer matches the checksum of an earlier init: start the lock afresh.
rm -rf "$tf/.terraform/providers" "$tf/.terraform.lock.hcl"
: >"$state/terraformrc"
export TF_CLI_CONFIG_FILE="$state/terraformrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
export POSTERN_ENDPOINT="http://$api" POSTERN_API_TOKEN="$admin_token"
(cd "$tf" && terraform init -no-color >"$state/terraform-init.log") \
  || { cat "$state/terraform-init.log" >&2; fail "terraform init failed"; }

say "4/6 terraform apply"
(cd "$tf" && terraform apply -auto-approve -no-color) | sed 's/^/    /'
token="$(cd "$tf" && terraform output -raw tunnel_token)"

say "5/6 starting the connector with the tunnel's token (built-in hello-world origin)"
"$bin/postern" tunnel run --token "$token" --hello-world --state-dir "$state/connector" \
  2>"$state/connector.log" >/dev/null &
echo $! >"$state/connector.pid"
for _ in $(seq 1 100); do
  if curl -sf -H "Authorization: Bearer $admin_token" \
      "http://$api/v1/tunnels/$(cd "$tf" && terraform output -raw tunnel_id)/connections" | grep -q '"config_version"'; then
    break
  fi
  sleep 0.1
done

say "6/6 a request through the edge: curl -H 'Host: $hostname' http://$http/"
answer="$(curl -sS --max-time 10 -H "Host: $hostname" "http://$http/")" \
  || { tail -n 20 "$state/edge.log" "$state/connector.log" >&2; fail "the request through the edge failed"; }
printf '%s\n' "$answer" | sed 's/^/    /'
edge_info="$(curl -sf -H "Authorization: Bearer $admin_token" "http://$api/v1/edge")"
printf '%b' "$(printf '%s' "$edge_info" | sed -E 's/.*"ca_cert_pem":"([^"]*)".*/\1/')" >"$state/ca.pem"

if [ -n "${POSTERN_QUICKSTART_EXIT:-}" ] || [ "${CI:-}" = "true" ]; then
  stop_all
  say "done; everything is stopped (CI mode)"
  exit 0
fi

cat <<EOT

Running now
  edge       pid $(cat "$state/edge.pid"), log $state/edge.log
  connector  pid $(cat "$state/connector.pid"), log $state/connector.log
  Terraform  working directory $tf (state: terraform.tfstate)

Try next
  curl -H 'Host: $hostname' http://$http/
  curl --cacert $state/ca.pem --resolve $hostname:${https##*:}:127.0.0.1 https://$hostname:${https##*:}/
  dig @127.0.0.1 -p ${dns##*:} $hostname            # A record and TXT labels, straight from the edge
  curl -H "Authorization: Bearer \$(cat $state/data/admin-token)" http://$api/v1/tunnels

Change something and re-apply
  cd $tf
  export POSTERN_ENDPOINT=http://$api POSTERN_API_TOKEN=\$(cat $state/data/admin-token) TF_CLI_CONFIG_FILE=$state/terraformrc
  terraform apply -var hostname=hi.example.com   # renames the hostname: the old name stops, the new one serves
  curl -H 'Host: hi.example.com' http://$http/

Stop and clean up
  examples/quickstart/run.sh --stop     # stop the edge and the connector (state is kept)
  examples/quickstart/run.sh --clean    # stop and delete $state
EOT
