# shellcheck shell=sh
# Functions of the cluster jobs (infra/core/cluster_jobs.py): form and grow a Redis Cluster
# with redis-cli, load the function library. POSIX sh (busybox in the local image).
# The job's preamble sets TLS, ADMIN_USER, PORT, FUNCTIONS and WAIT_SECONDS, and
# REDISCLI_AUTH from an upload (never a command-line argument).
# TLS holds several redis-cli arguments: it is split on purpose.
# shellcheck disable=SC2086
cli() { redis-cli $TLS --user "$ADMIN_USER" --no-auth-warning "$@"; }
wait_until() {  # WHAT COMMAND...: until COMMAND succeeds; after WAIT_SECONDS fail naming WHAT
  what="$1"; shift
  deadline=$(( $(date +%s) + WAIT_SECONDS ))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "gave up waiting for $what" >&2; return 1; }
    sleep 0.05
  done
}
field() {  # ADDRESS FIELD: one field of CLUSTER INFO
  cli -h "$1" -p "$PORT" cluster info | tr -d '\r' | grep "^$2:" | cut -d: -f2
}
has_field() {  # ADDRESS FIELD VALUE
  [ "$(field "$1" "$2")" = "$3" ]
}
enabled() {  # ADDRESS: INFO cluster says cluster_enabled:1 (CLUSTER INFO has no such field)
  cli -h "$1" -p "$PORT" info cluster 2>/dev/null | tr -d '\r' | grep -qx 'cluster_enabled:1'
}
wait_enabled() {  # ADDRESS NAME
  wait_until "$2 ($1) to report cluster_enabled:1" enabled "$1"
}
alone() {  # ADDRESS: the node has not met any other node yet
  has_field "$1" cluster_known_nodes 1
}
node_id() {  # ADDRESS
  cli -h "$1" -p "$PORT" cluster myid | tr -d '\r'
}
knows() {  # ADDRESS NODE_ID: the node has heard of NODE_ID (gossip spread a MEET)
  cli -h "$1" -p "$PORT" cluster nodes | grep -q "^$2 "
}
agree() {  # ADDRESS: every node agrees on the slot map, every slot served
  cli --cluster check "$1:$PORT" >/dev/null 2>&1
}
wait_agreement() {  # ADDRESS
  wait_until "the nodes to agree on the slot map" agree "$1" || {
    cli --cluster check "$1:$PORT" >&2; exit 1
  }
}
batch() {  # ADDRESS: the commands on stdin over one connection; fail unless every one
  # answered OK (an unreachable node makes redis-cli print nothing and exit 0)
  commands="$(cat)"
  sent="$(printf '%s\n' "$commands" | grep -c .)"
  replies="$(printf '%s\n' "$commands" | cli -h "$1" -p "$PORT" 2>&1 | tr -d '\r')"
  if [ "$(printf '%s\n' "$replies" | grep -cx OK)" != "$sent" ]; then
    echo "$1 did not accept all $sent commands: $replies" >&2
    return 1
  fi
}
assign_slots() {  # ADDRESS FIRST LAST EPOCH: a fresh master takes its slots and a
  # distinct config epoch (what redis-cli --cluster create does, without its 1 s polls)
  printf 'CLUSTER ADDSLOTSRANGE %s %s\nCLUSTER SET-CONFIG-EPOCH %s\n' "$2" "$3" "$4" | batch "$1"
}
meet_all() {  # ADDRESS PEER...: the node meets every peer at once (one connection), so
  # no node waits for gossip to learn of another
  address="$1"
  shift
  for peer in "$@"; do printf 'CLUSTER MEET %s %s\n' "$peer" "$PORT"; done | batch "$address"
}
settled() {  # ADDRESS COUNT: knows COUNT nodes by name, no handshake still under way
  nodes="$(cli -h "$1" -p "$PORT" cluster nodes | tr -d '\r')"
  [ "$(printf '%s\n' "$nodes" | grep -c .)" = "$2" ] && ! printf '%s\n' "$nodes" | grep -q handshake
}
wait_settled() {  # ADDRESS COUNT
  wait_until "$1 to finish its handshakes with $2 nodes" settled "$1" "$2"
}
meet() {  # NEW_ADDRESS MEMBER_ADDRESS: the new node joins the member's cluster
  if alone "$1"; then cli -h "$1" -p "$PORT" cluster meet "$2" "$PORT" >/dev/null; fi
}
wait_known() {  # ADDRESS COUNT: until the node knows COUNT nodes (gossip spread the MEETs)
  wait_until "$1 to know $2 nodes" has_field "$1" cluster_known_nodes "$2"
}
wait_ok() {  # ADDRESS: until the node itself says cluster_state:ok (it serves or proxies)
  wait_until "$1 to report cluster_state:ok" has_field "$1" cluster_state ok
}
wait_linked() {  # ADDRESS: until the replica's link to its master is up
  wait_until "$1 to link to its master" linked "$1"
}
wait_replicas_linked() {  # ADDRESS...: every one that is a replica now has its link up
  for address in "$@"; do
    if ! is_master "$address"; then wait_linked "$address"; fi
  done
}
linked() {  # ADDRESS
  cli -h "$1" -p "$PORT" info replication | tr -d '\r' | grep -qx 'master_link_status:up'
}
close_open_slots() {  # ADDRESS: finish a slot move an interrupted rebalance left open
  if ! agree "$1"; then cli --cluster fix "$1:$PORT" --cluster-yes; fi
}
is_master() {  # ADDRESS
  cli -h "$1" -p "$PORT" info replication | tr -d '\r' | grep -qx 'role:master'
}
wait_answering() {  # ADDRESS...: until every node answers (the job may start with them)
  for address in "$@"; do
    wait_until "$address to answer" cli -h "$address" -p "$PORT" ping >/dev/null
  done
}
load_functions() {  # ADDRESS...: the library on every master (replicas receive it); the
  # scripts call it once every node answers
  loaded=0
  for address in "$@"; do
    if is_master "$address"; then
      cli -h "$address" -p "$PORT" -x function load replace < "$FUNCTIONS" >/dev/null
      loaded=$((loaded + 1))
    fi
  done
  [ "$loaded" -gt 0 ] || { echo "no master to load the function library on" >&2; return 1; }
  echo "function library loaded on $loaded master(s)"
}
library_name() {  # the name on the library's first line, "#!lua name=NAME"
  sed -n '1s/.*name=//p' "$FUNCTIONS"
}
has_library() {  # ADDRESS NAME: the node holds the library (loaded, or replicated to it)
  cli -h "$1" -p "$PORT" function list libraryname "$2" | tr -d '\r' | grep -qx "$2"
}
wait_library() {  # ADDRESS...: until every node holds the library, so a replica promoted
  # right after bring-up can still serve FCALL
  name="$(library_name)"
  for address in "$@"; do
    wait_until "$address to hold the function library $name" has_library "$address" "$name"
  done
}
ready() {  # ADDRESS COUNT LIBRARY: the node knows COUNT nodes, says cluster_state:ok,
  # is linked to its master if it is a replica and holds the function library, read
  # over one connection (each redis-cli run is a process and a TLS handshake)
  state="$(printf 'CLUSTER INFO\nINFO replication\nFUNCTION LIST LIBRARYNAME %s\n' "$3" |
    cli -h "$1" -p "$PORT" 2>/dev/null | tr -d '\r')"
  in_state "cluster_known_nodes:$2" && in_state cluster_state:ok && in_state "$3" &&
    { in_state role:master || in_state master_link_status:up; }
}
in_state() {  # LINE: the last read state has that exact line
  printf '%s\n' "$state" | grep -qx "$1"
}
wait_ready() {  # COUNT ADDRESS...: until every node is ready (see ready)
  count="$1"
  shift
  name="$(library_name)"
  for address in "$@"; do
    wait_until "$address to know $count nodes, report cluster_state:ok, link to its master if a replica and hold the function library $name" \
      ready "$address" "$count" "$name" || {
      printf '%s\n' "$state" | grep -E '^(cluster_state|cluster_known_nodes|role|master_link_status):' >&2
      return 1
    }
  done
}
value_after() {  # FIELD: the line after FIELD in redis-cli's one-element-per-line output
  grep -A1 -x "$1" | tail -n 1
}
reached_peers() {  # SENTINEL_ADDRESS SENTINEL_PORT SERVICE: how many peers the sentinel
  # has reached: connected (flags exactly "sentinel") and its last PING answered
  # ("last-ping-sent" 0), which needs the peer credentials. Counting the peers it
  # knows would prove nothing: the config seeds them.
  cli -h "$1" -p "$2" sentinel sentinels "$3" | tr -d '\r' | awk '
    previous == "flags" { connected = ($0 == "sentinel") }
    previous == "last-ping-sent" && connected && $0 == "0" { reached++ }
    { previous = $0 }
    END { print reached + 0 }'
}
converged() {  # SENTINEL_ADDRESS SENTINEL_PORT SERVICE REPLICAS OTHERS MASTER_IP: the
  # sentinel names that master and sees it healthy (flags exactly "master": not down, no
  # failover under way), every replica healthy (flags exactly "slave") and has reached
  # every other sentinel
  master="$(cli -h "$1" -p "$2" sentinel master "$3" | tr -d '\r')"
  [ "$(echo "$master" | value_after ip)" = "$6" ] || return 1
  [ "$(echo "$master" | value_after flags)" = "master" ] || return 1
  healthy="$(cli -h "$1" -p "$2" sentinel replicas "$3" | tr -d '\r' | grep -A1 -x flags | grep -cx slave || true)"
  [ "$healthy" = "$4" ] && [ "$(reached_peers "$1" "$2" "$3")" = "$5" ]
}
master_of() {  # SENTINEL_ADDRESS SENTINEL_PORT SERVICE: the master's address, as named
  cli -h "$1" -p "$2" sentinel get-master-addr-by-name "$3" 2>/dev/null | head -n 1 | tr -d '\r'
}
names_master() {  # SENTINEL_ADDRESS SENTINEL_PORT SERVICE
  [ -n "$(master_of "$1" "$2" "$3")" ]
}
wait_converged() {  # SENTINEL_PORT SERVICE REPLICAS OTHERS SENTINEL_ADDRESS...
  sentinel_port="$1" service="$2" replicas="$3" others="$4"
  shift 4
  # The master as the first sentinel names it; every sentinel must name the same one.
  # The job may start before the sentinels answer: ask until one names a master.
  wait_until "sentinel $1 to name the master of $service" \
    names_master "$1" "$sentinel_port" "$service"
  master_ip="$(master_of "$1" "$sentinel_port" "$service")"
  for address in "$@"; do
    wait_until "sentinel $address to see $replicas replicas and reach $others sentinels" \
      converged "$address" "$sentinel_port" "$service" "$replicas" "$others" "$master_ip" || {
      echo "the first sentinel named master $master_ip; sentinel $address sees:" >&2
      cli -h "$address" -p "$sentinel_port" sentinel master "$service" | tr '\r\n' '  ' >&2
      cli -h "$address" -p "$sentinel_port" sentinel replicas "$service" | tr '\r\n' '  ' >&2
      cli -h "$address" -p "$sentinel_port" sentinel sentinels "$service" | tr '\r\n' '  ' >&2
      return 1
    }
  done
  echo "sentinel group converged"
}
replicate() {  # REPLICA_ADDRESS MASTER_ADDRESS: unless it already replicates
  if ! cli -h "$1" -p "$PORT" info replication | tr -d '\r' | grep -qx 'role:slave'; then
    master_id="$(node_id "$2")"
    # CLUSTER REPLICATE needs the master known: as soon as gossip brought it, not later.
    wait_until "$1 to learn of its master $2" knows "$1" "$master_id"
    cli -h "$1" -p "$PORT" cluster replicate "$master_id" >/dev/null
  fi
}
