#!/usr/bin/env bash
# Testing aid: run one command as an N-process JAX job on this machine, e.g. to try multi-host
# training on a laptop's CPU before a pod. Not a scheduler or a process pool: it starts N copies
# of the same command, process i with MGEN_COORDINATOR=localhost:PORT MGEN_NUM_PROCESSES=N
# MGEN_PROCESS_ID=i in its environment (what `mgen train --coordinator/--num_processes/
# --process_id` read when not given), and waits for them. On a real cluster start one process
# per host yourself (a TPU pod needs no flags at all).
#
#   scripts/launch_local.sh [-d DEVICES] N COMMAND [ARGS...]
#   scripts/launch_local.sh -d 4 2 mgen train --config=experiments/quickstart.py:smoke \
#       --config.tae_train.batch_size=8 --workdir=runs/two_processes
#
# -d DEVICES: CPU devices per process (JAX_PLATFORMS=cpu, XLA_FLAGS host device count).
# Process 0 prints to this terminal; process i>0 to $MGEN_LOG_DIR/process-i.log (default: a new
# temporary folder). If any process fails, the others are stopped (they would wait for it at
# the next barrier) and its exit status is returned.
set -euo pipefail

devices=""
if [[ "${1:-}" == "-d" ]]; then devices="$2"; shift 2; fi
if [[ $# -lt 2 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
n="$1"; shift

port="$("${PYTHON:-python3}" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')"
log_dir="${MGEN_LOG_DIR:-$(mktemp -d -t mgen-launch-XXXXXX)}"
mkdir -p "$log_dir"
if [[ -n "$devices" ]]; then
  export JAX_PLATFORMS=cpu
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$devices"
fi
export MGEN_COORDINATOR="localhost:$port" MGEN_NUM_PROCESSES="$n"

pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'stop_all; exit 130' INT TERM
for ((i = 0; i < n; i++)); do
  if ((i == 0)); then
    MGEN_PROCESS_ID=0 "$@" &
  else
    MGEN_PROCESS_ID="$i" "$@" >"$log_dir/process-$i.log" 2>&1 &
  fi
  pids+=("$!")
done
((n > 1)) && echo "launch_local: $n processes, coordinator localhost:$port, logs of 1..$((n - 1)) in $log_dir" >&2

status=0
for ((left = n; left > 0; left--)); do
  rc=0
  wait -n || rc=$?
  if ((rc != 0 && status == 0)); then
    status=$rc
    echo "launch_local: a process exited with status $rc; stopping the others" >&2
    stop_all
  fi
done
exit "$status"
