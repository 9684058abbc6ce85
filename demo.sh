#!/usr/bin/env bash
# The main job, for a person: builds the agents, starts crostini-host (the host stand-in) and both
# daemons talking over unix sockets, and shows what the host receives from them.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '\n==> %s\n' "$*"; }

say "building crostini-host, tremplin and garcon"
cargo build --workspace --bins --quiet
bin=target/debug

run=$(mktemp -d /tmp/crostini-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

token=$(cat /proc/sys/kernel/random/uuid)
echo -n "$token" > "$run/container_token"

say "crostini-host serving ContainerListener and TremplinListener in $run"
"$bin/crostini-host" serve \
  --container-listen "unix://$run/host-8889.sock" \
  --tremplin-listen "unix://$run/host-7778.sock" \
  --token "penguin=$token" > "$run/host-events.jsonl" 2> "$run/host.log" &
pids+=($!)
for _ in $(seq 50); do [ -S "$run/host-7778.sock" ] && [ -S "$run/host-8889.sock" ] && break; sleep 0.1; done

say "tremplin (the VM agent) on unix://$run/tremplin.sock"
"$bin/tremplin" --listen "unix://$run/tremplin.sock" --host-address "unix://$run/host-7778.sock" \
  --lxd_subnet 100.115.92.1/24 2> "$run/tremplin.log" &
pids+=($!)

say "garcon (the container agent) on unix://$run/garcon.sock"
"$bin/garcon" --server --allow_any_user --listen "unix://$run/garcon.sock" \
  --host-address "unix://$run/host-8889.sock" --token-file "$run/container_token" 2> "$run/garcon.log" &
garcon_pid=$!
pids+=($garcon_pid)

for _ in $(seq 100); do grep -q '"rpc":"ContainerReady"' "$run/host-events.jsonl" 2>/dev/null && break; sleep 0.1; done

say "what the host received (one JSON line per call)"
cut -c1-300 "$run/host-events.jsonl"

say "asking tremplin for its debug information through crostini-host"
"$bin/crostini-host" tremplin --address "unix://$run/tremplin.sock" debug-info | head -20 || true

say "stopping garcon with SIGTERM (it says ContainerShutdown)"
kill -TERM "$garcon_pid"; wait "$garcon_pid" || true
sleep 0.3
grep '"rpc":"ContainerShutdown"' "$run/host-events.jsonl" | cut -c1-300 || echo "(no ContainerShutdown seen)"
