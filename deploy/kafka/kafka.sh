#!/usr/bin/env bash
# Runs a real single-node Apache Kafka broker (KRaft, broker+controller) on 127.0.0.1 without Docker.
#
#   kafka.sh jars                 resolve the broker jars from Maven Central into the cache (idempotent)
#   kafka.sh start [DIR] [PORT]   format KRaft storage in DIR, start the broker, wait until it answers,
#                                 print its bootstrap address (host:port) on stdout; PORT 0 = a free one
#   kafka.sh stop [DIR]           stop the broker started in DIR (SIGTERM, then SIGKILL after 20 s)
#   kafka.sh status [DIR]         print the bootstrap address if the broker in DIR is running
#
# DIR defaults to .kafka in the current folder. The broker logs to DIR/broker.log. A DIR that was
# already formatted keeps its data, so stop + start resumes the same cluster (used by fault tests).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
libs="${PIXELTRACK_KAFKA_LIBS:-$here/.cache/libs}"
cmd="${1:-}"; shift || true
dir="${1:-.kafka}"
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

jars() {
  if [ ! -f "$libs/.complete" ]; then
    mvn -q -B -f "$here/pom.xml" -Dlibs.dir="$libs" package >&2
    touch "$libs/.complete"
  fi
}

# Runs java with the broker classpath, in place of the (sub)shell that calls it.
java_run() {
  local heap="${PIXELTRACK_KAFKA_HEAP:--Xms256m -Xmx768m}"
  # shellcheck disable=SC2086
  exec java $heap -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$libs/*" "$@"
}

running() { [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; }

start() {
  jars
  local port="${2:-0}"
  if running; then cat "$dir/bootstrap"; return 0; fi
  if [ ! -f "$dir/server.properties" ]; then
    [ "$port" = 0 ] && port=$(free_port)
    local cport; cport=$(free_port)
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
PROPS
    echo "127.0.0.1:$port" > "$dir/bootstrap"
    local cluster_id
    # A base64url id may start with "-", which the storage tool's argument parser takes for an option
    # (as Kafka's own Uuid.randomUuid does, draw again until it does not).
    cluster_id=$(python3 -c 'import base64,uuid
while (c := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(c)')
    (java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties") >> "$dir/broker.log" 2>&1
  fi
  java_run kafka.Kafka "$dir/server.properties" >> "$dir/broker.log" 2>&1 &
  echo $! > "$dir/broker.pid"
  local addr; addr=$(cat "$dir/bootstrap")
  local deadline=$((SECONDS + ${PIXELTRACK_KAFKA_START_TIMEOUT:-90}))
  until grep -q "Kafka Server started" "$dir/broker.log" 2>/dev/null && \
        python3 -c "import socket,sys; h,p='$addr'.split(':'); socket.create_connection((h,int(p)),1).close()" 2>/dev/null; do
    if ! running; then echo "kafka.sh: broker exited; see $dir/broker.log" >&2; tail -20 "$dir/broker.log" >&2; exit 1; fi
    if [ $SECONDS -ge $deadline ]; then echo "kafka.sh: broker not ready in time; see $dir/broker.log" >&2; exit 1; fi
    sleep 0.3
  done
  echo "$addr"
}

stop() {
  running || { rm -f "$dir/broker.pid"; return 0; }
  local pid; pid=$(cat "$dir/broker.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/broker.pid"
}

case "$cmd" in
  jars) jars ;;
  start) start "$dir" "${2:-0}" ;;
  stop) stop ;;
  status) running && cat "$dir/bootstrap" ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
