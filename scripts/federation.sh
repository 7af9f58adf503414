#!/usr/bin/env bash
# A three-node federation in Docker, and a scenario across it.
#
#   scripts/federation.sh [--local-only] [--rebuild] [--keep]
#
# Brings up docker-compose.yml (node-a, node-b, node-c; building the image with
# docker/build-image.sh if it is missing), waits for each node's GET /health, then:
#
#   part 1  each node on its own: distinct DIDs, a channel on node-a written and read back and
#           followed live, data on node-b and node-c; node-b stopped and started again keeps its
#           DID, its log and its beams.
#   part 2  across nodes: users of node-b and node-c join a channel
#           sequenced by node-a through their own home node, post and tail across nodes; node-b
#           is stopped and node-a and node-c still converge; node-b is started again and
#           catches up with node-a's log.
#
# and always tears the federation down (`down -v`), on success, failure or Ctrl-C.
#
# The client commands run the `northstar` CLI in throwaway containers on the federation's
# network, dialling ws://node-X:7700: a node's auth challenge names its public URL, and the CLI
# only signs a challenge for the origin it dialled, so an authenticated call through the
# published port (ws://127.0.0.1:7701) is refused by design. The published ports serve
# /health and anonymous calls (node info) from the host.
#
# Options:
#   --local-only  run part 1 only (each node on its own)
#   --rebuild     rebuild the image even if it exists
#   --keep        leave the federation running at the end (for debugging; tear it down with
#                 the command printed)
# Environment:
#   NORTHSTAR_IMAGE (default northstar:local), NORTHSTAR_COMPOSE_PROJECT (default
#   northstar-fed), NORTHSTAR_PORT_A/B/C (default 7701/7702/7703), NORTHSTAR_HEALTH_TIMEOUT
#   (seconds per node, default 60), NORTHSTAR_SYNC_TIMEOUT (seconds for each convergence
#   check, default 60), NORTHSTAR_COMPOSE (the compose command, default docker-compose, else
#   `docker compose`), NORTHSTAR_RUST_LOG (the nodes' RUST_LOG, default info).
set -euo pipefail
cd "$(dirname "$0")/.."

local_only=0 rebuild=0 keep=0
for arg in "$@"; do
  case $arg in
    --local-only) local_only=1 ;;
    --rebuild) rebuild=1 ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "federation.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

export NORTHSTAR_IMAGE=${NORTHSTAR_IMAGE:-northstar:local}
export NORTHSTAR_PORT_A=${NORTHSTAR_PORT_A:-7701}
export NORTHSTAR_PORT_B=${NORTHSTAR_PORT_B:-7702}
export NORTHSTAR_PORT_C=${NORTHSTAR_PORT_C:-7703}
project=${NORTHSTAR_COMPOSE_PROJECT:-northstar-fed}
health_timeout=${NORTHSTAR_HEALTH_TIMEOUT:-60}
sync_timeout=${NORTHSTAR_SYNC_TIMEOUT:-60}
image=$NORTHSTAR_IMAGE
nodes=(node-a node-b node-c)
declare -A port=([node-a]=$NORTHSTAR_PORT_A [node-b]=$NORTHSTAR_PORT_B [node-c]=$NORTHSTAR_PORT_C)

# ---------------------------------------------------------------------------------- helpers

t0=$(date +%s%3N)
elapsed() { local ms=$(($(date +%s%3N) - t0)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
log() { printf '[%6ss] %s\n' "$(elapsed)" "$*"; }
part() { printf '\n[%6ss] ======== %s\n' "$(elapsed)" "$*"; }
ok() { printf '[%6ss]   ok: %s\n' "$(elapsed)" "$*"; }
die() { printf '[%6ss] FAIL: %s\n' "$(elapsed)" "$*" >&2; exit 1; }

if [ -n "${NORTHSTAR_COMPOSE:-}" ]; then
  read -ra compose_cmd <<<"$NORTHSTAR_COMPOSE"
elif command -v docker-compose >/dev/null; then
  compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  die "neither docker-compose nor the docker compose plugin is installed"
fi
compose() { "${compose_cmd[@]}" -p "$project" -f docker-compose.yml "$@"; }

command -v docker >/dev/null || die "docker not found"
command -v python3 >/dev/null || die "python3 not found (it compares the logs)"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine"

work=$(mktemp -d)
uid=$(id -u) gid=$(id -g)
net="" started=0 tails=()

cleanup() {
  local status=$?
  set +e
  # The teardown must finish even if the output is gone (a closed pipe) or Ctrl-C comes again.
  trap '' PIPE INT TERM
  for c in "${tails[@]}"; do docker rm -f -v "$c" >/dev/null 2>&1; done
  if [ "$status" -ne 0 ] && [ "$started" = 1 ]; then
    echo "--- containers at the failure"
    compose ps
    for n in "${nodes[@]}"; do
      echo "--- last log lines of $n"
      compose logs --no-color --tail=30 "$n" 2>&1
    done
  fi
  if [ "$started" = 1 ]; then
    if [ "$keep" = 1 ]; then
      echo "--keep: the federation is still up; tear it down with:"
      echo "  ${compose_cmd[*]} -p $project -f docker-compose.yml down -v"
    else
      log "tearing down: ${compose_cmd[*]} -p $project down -v"
      compose down -v --remove-orphans >"$work/down.log" 2>&1 || cat "$work/down.log" >&2
    fi
  fi
  rm -rf "$work"
  if [ "$status" -eq 0 ]; then log "PASS"; else log "FAILED (exit $status)"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE

# The CLI in a throwaway container on the federation's network, as user WHO (key
# $work/WHO.json) talking to NODE: `ns_try NODE WHO ARGS...`. Its stderr goes to $work/ns.err.
# A tmpfs on /data keeps the image's VOLUME from leaving an anonymous volume behind.
ns_try() {
  local node=$1 who=$2
  shift 2
  docker run --rm --network "$net" -v "$work:/work" --tmpfs /data --user "$uid:$gid" "$image" \
    --json --node "ws://$node:7700" --key "/work/$who.json" "$@" 2>"$work/ns.err"
}
# The same, failing the script with the command and its error.
ns() {
  local node=$1 who=$2
  shift 2
  ns_try "$node" "$who" "$@" || die "northstar $* (as $who via $node): $(tail -n 3 "$work/ns.err")"
}
# `ack NODE WHO ARGS...`: ns, then record the acknowledged event id in $work/acked; the
# command's output is left in $out.
out=""
ack() {
  out=$(ns "$@")
  echo "$out" | field event_id >>"$work/acked"
}
# A field of the one JSON object on stdin: `... | field KEY`.
field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())[sys.argv[1]])' "$1"; }

healthy() {
  if command -v curl >/dev/null; then
    curl -fsS --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null | grep -q '"ok"'
  else
    python3 -c 'import sys,urllib.request as u; sys.exit(b"\"ok\"" not in u.urlopen(sys.argv[1], timeout=2).read())' \
      "http://127.0.0.1:$1/health" 2>/dev/null
  fi
}
# Wait until NODE answers GET /health on its published port, for at most $health_timeout s.
wait_health() {
  local node=$1 deadline=$((SECONDS + health_timeout)) id
  id=$(compose ps -q "$node")
  [ -n "$id" ] || die "$node has no container"
  until healthy "${port[$node]}"; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$id")" != true ]; then
      die "$node's container is not running (exit code $(docker inspect -f '{{.State.ExitCode}}' "$id"))"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$node: no answer on http://127.0.0.1:${port[$node]}/health within ${health_timeout}s"
    sleep 0.2
  done
}

# Follow SPACE as WHO via NODE in a detached container named $project-tail-NAME; its stdout
# (one JSON event per line) is read back with `docker logs`.
start_tail() {
  local name=$project-tail-$1 node=$2 who=$3 space=$4
  docker run -d --name "$name" --network "$net" -v "$work:/work" --tmpfs /data --user "$uid:$gid" "$image" \
    --json --node "ws://$node:7700" --key "/work/$who.json" space tail "$space" >/dev/null
  tails+=("$name")
}
stop_tail() { docker rm -f -v "$project-tail-$1" >/dev/null; }
# Wait until tail NAME has printed every event id given, for at most $sync_timeout s.
wait_tail() {
  local name=$project-tail-$1 deadline=$((SECONDS + sync_timeout)) missing
  shift
  while :; do
    missing=$(docker logs "$name" 2>/dev/null | python3 -c '
import json, sys
seen = {json.loads(l)["id"] for l in sys.stdin if l.strip().startswith("{")}
print(" ".join(i for i in sys.argv[1:] if i not in seen))' "$@")
    [ -z "$missing" ] && return 0
    if [ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]; then
      die "tail $name ended early: $(docker logs "$name" 2>&1 >/dev/null | tail -n 3)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "tail $name still lacks event(s) $missing after ${sync_timeout}s"
    sleep 0.5
  done
}

# Every event of SPACE as WHO via NODE, one JSON object per line, paging until an empty page.
events_all() {
  local node=$1 who=$2 space=$3 since=0 page
  while :; do
    page=$(ns_try "$node" "$who" space events "$space" --since "$since" --limit 500) || return 1
    [ -n "$page" ] || return 0
    printf '%s\n' "$page"
    since=$(printf '%s\n' "$page" | tail -n 1 | field seq)
  done
}
# `seq id` lines of a file of events; fails if the seqs are not 1, 2, 3, ...
summarize() {
  python3 -c '
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
seqs = [e["seq"] for e in events]
if seqs != list(range(1, len(seqs) + 1)):
    sys.exit("seqs are not 1..n: %s" % seqs)
for e in events:
    print(e["seq"], e["id"])' "$1"
}

# Check once that SPACE's log, read as WHO via NODE for every NODE:WHO given, is the same
# everywhere and holds every event id in the file EXPECT. Sets `reason` when it is not.
reason=""
logs_agree() {
  local space=$1 expect=$2 first="" first_node="" pair node who f missing
  shift 2
  for pair in "$@"; do
    node=${pair%%:*} who=${pair#*:} f=$work/log.$node
    if ! events_all "$node" "$who" "$space" >"$f.json"; then
      reason="cannot read the log via $node: $(tail -n 1 "$work/ns.err")"
      return 1
    fi
    if ! summarize "$f.json" >"$f" 2>"$f.err"; then
      reason="$node: $(cat "$f.err")"
      return 1
    fi
    missing=$(awk 'NR == FNR { have[$2] = 1; next } !($1 in have) { print $1 }' "$f" "$expect")
    if [ -n "$missing" ]; then
      reason="$node's log ($(wc -l <"$f") events) lacks $(echo "$missing" | wc -l) acknowledged event(s), e.g. $(echo "$missing" | head -n 1)"
      return 1
    fi
    if [ -z "$first" ]; then
      first=$f first_node=$node
    elif ! cmp -s "$first" "$f"; then
      reason="$node's log differs from $first_node's: $(diff "$first" "$f" | head -n 6 | tr '\n' ' ')"
      return 1
    fi
  done
}
# Retry logs_agree until it holds, for at most $sync_timeout s.
wait_agree() {
  local what=$1 deadline=$((SECONDS + sync_timeout))
  shift
  until logs_agree "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what: not converged after ${sync_timeout}s: $reason"
    sleep 1
  done
  ok "$what ($(wc -l <"$work/log.${3%%:*}") events, same seqs and ids)"
}

# ---------------------------------------------------------------------------------- start

part "START"
if [ "$rebuild" = 1 ] || ! docker image inspect "$image" >/dev/null 2>&1; then
  log "building the image $image (docker/build-image.sh)"
  b0=$SECONDS
  NORTHSTAR_IMAGE=$image docker/build-image.sh
  log "image built in $((SECONDS - b0))s"
fi
log "image $image: $(docker image inspect -f '{{.Id}}' "$image" | cut -c 8-19)," \
  "$(($(docker image inspect -f '{{.Size}}' "$image") / 1000000)) MB"

log "compose: ${compose_cmd[*]} ($("${compose_cmd[@]}" version --short 2>/dev/null || echo '?')), project $project"
started=1
compose down -v --remove-orphans >/dev/null 2>&1 || true # leftovers of an earlier --keep run
up0=$(date +%s%3N)
compose up -d >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "compose up failed"; }
for n in "${nodes[@]}"; do wait_health "$n"; done
ok "node-a, node-b, node-c answer /health on 127.0.0.1:$NORTHSTAR_PORT_A/$NORTHSTAR_PORT_B/$NORTHSTAR_PORT_C, $(($(date +%s%3N) - up0)) ms after up"
net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$(compose ps -q node-a)")
[ -n "$net" ] || die "cannot find the federation's network"
log "network $net"

# ---------------------------------------------------------------------------------- part 1

part "PART 1: EACH NODE ON ITS OWN"

declare -A did
for n in "${nodes[@]}"; do
  info=$(ns "$n" nobody node info)
  did[$n]=$(echo "$info" | field did)
  [ "$(echo "$info" | field public_url)" = "ws://$n:7700" ] || die "$n's public_url is $(echo "$info" | field public_url), not ws://$n:7700"
  [ "$(echo "$info" | field authority)" = "$n:7700" ] || die "$n's authority is $(echo "$info" | field authority)"
  ok "$n is ${did[$n]} at ws://$n:7700"
done
[ "${did[node-a]}" != "${did[node-b]}" ] && [ "${did[node-b]}" != "${did[node-c]}" ] \
  && [ "${did[node-a]}" != "${did[node-c]}" ] || die "two nodes share a DID"
ok "three distinct node DIDs"

host_cli=${CARGO_TARGET_DIR:-target}/release/northstar
if [ -x "$host_cli" ]; then
  out=$("$host_cli" --json --node "ws://127.0.0.1:$NORTHSTAR_PORT_A" node info) \
    || die "anonymous node info from the host through 127.0.0.1:$NORTHSTAR_PORT_A failed"
  got=$(echo "$out" | field did)
  [ "$got" = "${did[node-a]}" ] || die "127.0.0.1:$NORTHSTAR_PORT_A answers as $got, not node-a"
  ok "the host's CLI reaches node-a anonymously through 127.0.0.1:$NORTHSTAR_PORT_A"
fi

for who in alice bob carol; do ns node-a "$who" key generate --out "/work/$who.json" >/dev/null; done
ok "keys: alice (home node-a), bob (home node-b), carol (home node-c)"

# alice's channel on node-a, written, read back and followed live.
: >"$work/acked"
ack node-a alice space create --type channel --name General --id general
space=$(echo "$out" | field id)
uri=$(echo "$out" | field uri)
[ "$uri" = "northstar://node-a:7700/$space" ] || die "the channel's URI is $uri, not northstar://node-a:7700/$space"
ok "alice created $uri"

start_tail alice-a node-a alice "$uri"
ack node-a alice beam post "$uri" --title "Hello" --body "first post, on node-a"
beam_a=$(echo "$out" | field beam_uri)
got=$(ns node-a alice beam get "$beam_a")
[ "$(echo "$got" | field title)" = Hello ] && [ "$(echo "$got" | field body)" = "first post, on node-a" ] \
  || die "beam get $beam_a returned $got"
ok "alice posted $beam_a and read it back"
# shellcheck disable=SC2046
wait_tail alice-a $(cat "$work/acked")
ok "alice's tail on node-a printed the create and the post"
wait_agree "node-a's log of the channel holds both events" "$uri" "$work/acked" node-a:alice
stop_tail alice-a

# Data of their own on node-b and node-c.
out=$(ns node-b bob space create --type channel --name "Bob's notes" --id notes)
b_space=$(echo "$out" | field uri)
out=$(ns node-b bob beam post "$b_space" --title one --body "kept across restarts")
b_beam=$(echo "$out" | field beam_uri)
ns node-b bob beam post "$b_space" --title two --body "also kept" >/dev/null
events_all node-b bob "$b_space" >"$work/b-before.json" || die "cannot read $b_space on node-b"
summarize "$work/b-before.json" >"$work/b-before"
ok "bob created $b_space on node-b with $(wc -l <"$work/b-before") events"
out=$(ns node-c carol space create --type channel --name "Carol's notes" --id notes)
c_space=$(echo "$out" | field uri)
ns node-c carol beam post "$c_space" --title one --body "on node-c" >/dev/null
ok "carol created $c_space on node-c and posted"

# node-b stopped and started again keeps its identity and its data.
s0=$(date +%s%3N)
compose stop node-b >/dev/null 2>&1 || die "compose stop node-b failed"
log "node-b stopped in $(($(date +%s%3N) - s0)) ms"
! healthy "$NORTHSTAR_PORT_B" || die "node-b still answers after stop"
healthy "$NORTHSTAR_PORT_A" && healthy "$NORTHSTAR_PORT_C" || die "node-a or node-c stopped answering while node-b was down"
ok "node-b is down; node-a and node-c still answer"
s0=$(date +%s%3N)
compose start node-b >/dev/null 2>&1 || die "compose start node-b failed"
wait_health node-b
ok "node-b is back, $(($(date +%s%3N) - s0)) ms after start"
out=$(ns node-b nobody node info)
got=$(echo "$out" | field did)
[ "$got" = "${did[node-b]}" ] || die "node-b came back as $got, not ${did[node-b]}"
events_all node-b bob "$b_space" >"$work/b-after.json" || die "cannot read $b_space on node-b after the restart"
summarize "$work/b-after.json" >"$work/b-after"
cmp -s "$work/b-before" "$work/b-after" || die "node-b's log changed across the restart: $(diff "$work/b-before" "$work/b-after" | head -n 6 | tr '\n' ' ')"
out=$(ns node-b bob beam get "$b_beam")
[ "$(echo "$out" | field body)" = "kept across restarts" ] || die "bob's beam $b_beam is gone after the restart"
ns node-b bob beam post "$b_space" --title three --body "after the restart" >/dev/null
ok "after the restart node-b has the same DID, the same log and its beams, and takes posts"

for n in node-a node-c; do
  deadline=$((SECONDS + 20))
  until [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$n")")" = healthy ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "Docker's health check of $n is not healthy: $(docker inspect -f '{{json .State.Health}}' "$(compose ps -q "$n")" | head -c 400)"
    sleep 1
  done
done
ok "Docker's health check (northstar node info inside the container) reports node-a and node-c healthy"

if [ "$local_only" = 1 ]; then
  part "PART 2 skipped (--local-only)"
  exit 0
fi

# ---------------------------------------------------------------------------------- part 2
# Everything below crosses nodes and needs federation: bob and carol reach alice's channel,
# sequenced by node-a, only through their own home nodes (node-b, node-c).

part "PART 2: ACROSS NODES"

for pair in node-b:bob node-c:carol; do
  node=${pair%%:*} who=${pair#*:}
  ack "$node" "$who" space join "$uri"
  ok "$who joined $uri through $node"
done

start_tail bob-b node-b bob "$uri"
start_tail carol-c node-c carol "$uri"
for pair in node-b:bob node-c:carol node-a:alice; do
  node=${pair%%:*} who=${pair#*:}
  ack "$node" "$who" beam post "$uri" --title "from $who" --body "posted through $node"
done
ok "bob (via node-b), carol (via node-c) and alice (via node-a) posted"
# shellcheck disable=SC2046
wait_tail bob-b $(cat "$work/acked")
ok "bob's tail through node-b printed every event"
# shellcheck disable=SC2046
wait_tail carol-c $(cat "$work/acked")
ok "carol's tail through node-c printed every event"
wait_agree "node-a, node-b and node-c serve the same log" "$uri" "$work/acked" \
  node-a:alice node-b:bob node-c:carol

# node-b goes away; node-a and node-c carry on.
stop_tail bob-b
compose stop node-b >/dev/null 2>&1 || die "compose stop node-b failed"
ok "node-b stopped"
for i in 1 2; do
  ack node-a alice beam post "$uri" --title "a$i" --body "while node-b is down"
  ack node-c carol beam post "$uri" --title "c$i" --body "while node-b is down"
done
ok "alice and carol posted 4 beams while node-b was down"
# shellcheck disable=SC2046
wait_tail carol-c $(cat "$work/acked")
ok "carol's tail through node-c kept up"
wait_agree "node-a and node-c converge without node-b" "$uri" "$work/acked" node-a:alice node-c:carol

# node-b comes back and catches up.
compose start node-b >/dev/null 2>&1 || die "compose start node-b failed"
wait_health node-b
ok "node-b is back"
wait_agree "node-b caught up: its space events equal node-a's" "$uri" "$work/acked" node-a:alice node-b:bob
ack node-b bob beam post "$uri" --title "back" --body "bob, after the restart"
# shellcheck disable=SC2046
wait_tail carol-c $(cat "$work/acked")
wait_agree "all three agree after bob posts again" "$uri" "$work/acked" \
  node-a:alice node-b:bob node-c:carol
stop_tail carol-c
