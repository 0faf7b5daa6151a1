#!/usr/bin/env bash
# Runs a real three-node Apache Kafka cluster (KRaft, every node broker+controller) on 127.0.0.1.
#
#   cluster.sh start [DIR]               format the nodes' storage (first time), start the three nodes at
#                                        once, wait until all answer; print the bootstrap list on stdout
#   cluster.sh stop [DIR]                stop every node (SIGTERM, then SIGKILL after 20 s)
#   cluster.sh start-node DIR N          start node N (1-3) again, same data and ports; wait until it answers
#   cluster.sh stop-node DIR N [SIGNAL]  stop node N: TERM (controlled shutdown, the default) or KILL
#   cluster.sh pid DIR N                 print node N's process id if it is running
#   cluster.sh status [DIR]              print the bootstrap list of the nodes running (exit 1 if none)
#
# DIR defaults to .kafka-cluster. Node N lives in DIR/nodeN (server.properties, data, broker.log).
# Topics get replication factor 3 and min.insync.replicas 2 by default, so with acks=all a write
# survives the loss of any one node and the cluster keeps taking writes with one node down.
# Heaps are small (PIXELTRACK_KAFKA_HEAP, default -Xms128m -Xmx384m): three JVMs on a laptop.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
libs="${PIXELTRACK_KAFKA_LIBS:-$here/.cache/libs}"
cmd="${1:-}"; shift || true
dir="${1:-.kafka-cluster}"
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
NODES=(1 2 3)

usage() { sed -n '2,15p' "$0" >&2; exit 2; }

java_run() {
  local heap="${PIXELTRACK_KAFKA_HEAP:--Xms128m -Xmx384m}"
  # C1 only: three JVMs starting on two cores spend half their start compiling with C2; a local
  # cluster does not need peak throughput.
  # shellcheck disable=SC2086
  exec java $heap -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$libs/*" "$@"
}

node_dir() { echo "$dir/node$1"; }
running() { local d; d=$(node_dir "$1"); [ -f "$d/broker.pid" ] && kill -0 "$(cat "$d/broker.pid")" 2>/dev/null; }
addr_of() { cat "$(node_dir "$1")/bootstrap"; }

# Writes the three nodes' server.properties (ports fixed once, so a node restarts where it was) and
# formats their storage with one cluster id.
configure() {
  [ -f "$dir/bootstrap" ] && return 0
  local ports
  # Six distinct free ports, held open together so none is handed out twice.
  ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(6)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
  read -r p1 p2 p3 c1 c2 c3 <<< "$ports"
  local plain=("" "$p1" "$p2" "$p3") ctrl=("" "$c1" "$c2" "$c3")
  local voters="1@127.0.0.1:$c1,2@127.0.0.1:$c2,3@127.0.0.1:$c3"
  local cluster_id
  # As in kafka.sh: a base64url id starting with "-" would be taken for an option.
  cluster_id=$(python3 -c 'import base64,uuid
while (c := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(c)')
  for n in "${NODES[@]}"; do
    local d; d=$(node_dir "$n"); mkdir -p "$d"
    cat > "$d/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${plain[$n]},CONTROLLER://127.0.0.1:${ctrl[$n]}
advertised.listeners=PLAINTEXT://127.0.0.1:${plain[$n]}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$d/data
num.partitions=4
auto.create.topics.enable=true
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
# A node that stops heartbeating is fenced (its partitions led elsewhere, it leaves every ISR) after
# 6 s instead of 9 s. Not less: on a busy two-core machine a 3 s session fenced nodes that were alive
# but starved, leaving one in-sync replica and refusing acks=all writes.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
PROPS
    echo "127.0.0.1:${plain[$n]}" > "$d/bootstrap"
    (java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$d/server.properties") >> "$d/broker.log" 2>&1 &
  done
  local failed=0
  for _ in "${NODES[@]}"; do wait -n || failed=1; done
  [ $failed = 0 ] || { echo "cluster.sh: formatting the storage failed; see $dir/node*/broker.log" >&2; exit 1; }
  echo "127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3" > "$dir/bootstrap"
}

# Starts node $1 in the background; does not wait. Prints the log size before the start, from which
# the wait reads (the log keeps earlier runs).
launch() {
  local n=$1 d; d=$(node_dir "$n")
  if running "$n"; then echo -1; return 0; fi
  local from; from=$(stat -c %s "$d/broker.log" 2>/dev/null || echo 0)
  java_run kafka.Kafka "$d/server.properties" >> "$d/broker.log" 2>&1 &
  echo $! > "$d/broker.pid"
  echo "$from"
}

# Waits until node $1 logged "Kafka Server started" after log offset $2 and its port accepts.
wait_ready() {
  local n=$1 from=$2 d; d=$(node_dir "$n")
  [ "$from" = -1 ] && return 0
  local addr; addr=$(addr_of "$n")
  local deadline=$((SECONDS + ${PIXELTRACK_KAFKA_START_TIMEOUT:-120}))
  until tail -c +$((from + 1)) "$d/broker.log" 2>/dev/null | grep -q "Kafka Server started" && \
        python3 -c "import socket; h,p='$addr'.split(':'); socket.create_connection((h,int(p)),1).close()" 2>/dev/null; do
    if ! running "$n"; then echo "cluster.sh: node $n exited; see $d/broker.log" >&2; tail -20 "$d/broker.log" >&2; return 1; fi
    if [ $SECONDS -ge $deadline ]; then echo "cluster.sh: node $n not ready in time; see $d/broker.log" >&2; return 1; fi
    sleep 0.3
  done
}

start_all() {
  [ -f "$libs/.complete" ] || "$here/kafka.sh" jars
  configure
  # All at once: a combined node waits for a controller quorum (two of three voters) before it serves.
  local from=()
  for n in "${NODES[@]}"; do from[$n]=$(launch "$n"); done
  for n in "${NODES[@]}"; do wait_ready "$n" "${from[$n]}"; done
  cat "$dir/bootstrap"
}

start_node() {
  local n=$1
  [ -f "$(node_dir "$n")/server.properties" ] || { echo "cluster.sh: node $n not configured in $dir" >&2; exit 1; }
  local from; from=$(launch "$n")
  wait_ready "$n" "$from"
  addr_of "$n"
}

stop_node() {
  local n=$1 sig=${2:-TERM} d; d=$(node_dir "$n")
  running "$n" || { rm -f "$d/broker.pid"; return 0; }
  local pid; pid=$(cat "$d/broker.pid")
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$d/broker.pid"
}

node_arg() { case "${1:-}" in 1|2|3) echo "$1" ;; *) echo "cluster.sh: node must be 1, 2 or 3, not '${1:-}'" >&2; exit 2 ;; esac; }

case "$cmd" in
  start) start_all ;;
  stop)
    # SIGTERM to all at once: stopped one by one, the last nodes wait for a quorum that is gone.
    for n in "${NODES[@]}"; do running "$n" && kill "$(cat "$(node_dir "$n")/broker.pid")" 2>/dev/null || true; done
    for n in "${NODES[@]}"; do stop_node "$n"; done ;;
  start-node) start_node "$(node_arg "${2:-}")" ;;
  stop-node)
    case "${3:-TERM}" in TERM|KILL) ;; *) echo "cluster.sh: signal must be TERM or KILL, not '$3'" >&2; exit 2 ;; esac
    stop_node "$(node_arg "${2:-}")" "${3:-TERM}" ;;
  pid) n=$(node_arg "${2:-}"); running "$n" && cat "$(node_dir "$n")/broker.pid" ;;
  status)
    up=()
    for n in "${NODES[@]}"; do running "$n" && up+=("$(addr_of "$n")"); done
    [ ${#up[@]} -gt 0 ] || exit 1
    (IFS=,; echo "${up[*]}") ;;
  *) usage ;;
esac
