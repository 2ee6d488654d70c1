#!/usr/bin/env bash
# End-to-end check of the compose fleet; exits non-zero on the first failed step.
#   1. up: certs, coord-0..2, nodes node-lite/node-phone/node-laptop (three device classes); a
#      leader with 3 voters; its /status shows all three nodes connected, serving requests, and
#      acking the latest plan epoch;
#   2. stop a node container: the coordinator sees it leave, the others keep serving; start it
#      again: it resumes on the assignment persisted in its store and rejoins;
#   3. cut a node's network (docker network disconnect): the node stays up and keeps serving on
#      its last assignment (its logs show the lost session and the failover attempts; on
#      reconnection its request counter shows it answered requests all along), then rejoins;
#   5. down -v (also on failure; MCDNN_SMOKE_KEEP=1 leaves the fleet up to look at).
#   The three replicas run as a Raft group: the checks read the leader's /status, and (4.) the
#   leader is stopped: it hands leadership over on SIGTERM, every node acks the new leader's plans,
#   the old leader rejoins as a follower. MCDNN_SMOKE_SINGLE=1 runs coord-0 alone instead (no 4.).
# Env: MCDNN_IMAGE (mcdnn:latest; built with scripts/image.sh when missing),
#      MCDNN_SMOKE_PROJECT (mcdnn-smoke), MCDNN_ADMIN_PORT (17480: coord-0's admin API on the
#      host's loopback), MCDNN_SMOKE_CUT_S (20), MCDNN_SMOKE_SINGLE=1 (coord-0 alone).
# Needs: docker, docker-compose (v1.29+), curl, jq.
set -euo pipefail
cd "$(dirname "$0")"

PROJECT=${MCDNN_SMOKE_PROJECT:-mcdnn-smoke}
export MCDNN_ADMIN_PORT=${MCDNN_ADMIN_PORT:-17480}
export MCDNN_IMAGE=${MCDNN_IMAGE:-mcdnn:latest}
CUT_S=${MCDNN_SMOKE_CUT_S:-20}
DC=(docker-compose -p "$PROJECT")
NODES=(node-lite node-phone node-laptop)
RAFT=1
UP=()          # all services
if [ "${MCDNN_SMOKE_SINGLE:-0}" = 1 ]; then
  RAFT=0
  export MCDNN_PEERS=coord-0=coord-0
  UP=(coord-0 "${NODES[@]}")
fi

step() { echo "smoke: $*"; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
for tool in docker docker-compose curl jq; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    echo "smoke: --- last logs ---" >&2
    "${DC[@]}" logs --no-color --tail 25 >&2 || true
  fi
  if [ "${MCDNN_SMOKE_KEEP:-0}" = 1 ]; then
    echo "smoke: leaving project $PROJECT up (MCDNN_SMOKE_KEEP=1); admin on 127.0.0.1:$MCDNN_ADMIN_PORT"
  else
    "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  [ "$rc" = 0 ] && echo "smoke: PASS" || echo "smoke: exit $rc" >&2
}

if ! docker image inspect "$MCDNN_IMAGE" >/dev/null 2>&1; then
  step "image $MCDNN_IMAGE missing; building it (scripts/image.sh)"
  MCDNN_IMAGE=$MCDNN_IMAGE ../../scripts/image.sh
fi

# The operator API of a replica, from inside its container with the `ops` identity (HTTPS,
# operator certificates only), so any replica can be asked, not only coord-0 whose port is
# published.
admin_get() { # SERVICE PATH
  "${DC[@]}" exec -T -e MCDNN_OPERATOR=ops -e MCDNN_IDENTITY_DIR=/fleet/ops "$1" mcdnnctl api "$2" --admin 127.0.0.1:7480 2>/dev/null
}
ADMIN=coord-0   # the replica whose /status the checks read: the leader (only it holds the fleet)
status() { admin_get "$ADMIN" /status; }
node_field() { status | jq -r --arg n "$1" ".nodes[] | select(.id == \$n) | .$2"; }
# wait_for SECONDS DESCRIPTION JQ_FILTER: polls /status until the filter is true.
wait_for() {
  local deadline=$((SECONDS + $1)) desc=$2 filter=$3
  until status 2>/dev/null | jq -e "$filter" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { status | jq -c '[.nodes[] | {id, connected, requests, sent_epoch, acked_epoch}]' >&2 || true; fail "timed out after $1 s waiting for: $desc"; }
    sleep 1
  done
  step "ok: $desc"
}
logs_of() { docker logs --since "$2" "$1" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'; }
cid_of() { "${DC[@]}" ps -q "$1"; }
serving() { # every listed node connected, serving, and acking the epoch last pushed to it
  local ids
  ids=$(printf '"%s",' "$@")
  echo "[${ids%,}] as \$want | [.nodes[] | select(.id as \$i | \$want | index(\$i))
        | select(.connected and .requests > 0 and .acked_epoch > 0 and .acked_epoch >= .sent_epoch - 1)]
        | length == (\$want | length)"
}

"${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
trap cleanup EXIT

step "1. up (project $PROJECT)"
"${DC[@]}" up -d "${UP[@]}" >"${TMPDIR:-/tmp}/$PROJECT-up.log" 2>&1 || { cat "${TMPDIR:-/tmp}/$PROJECT-up.log" >&2; fail "docker-compose up"; }
wait_for 90 "coord-0 /status answers" '.coordinator == "coord-0"'
# The published operator port answers TLS and refuses a client without a certificate (401).
[ "$(curl -ks --max-time 3 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$MCDNN_ADMIN_PORT/status")" = 401 ] \
  || fail "coord-0's published operator port"
if [ "$RAFT" = 1 ]; then
  leader_of() { admin_get "$1" /cluster | jq -r '.leader_name // empty'; }
  deadline=$((SECONDS + 60))
  until ADMIN=$(leader_of coord-0) && [ -n "$ADMIN" ] && [ "$(admin_get "$ADMIN" /cluster | jq '.voters | length')" = 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no leader with 3 voters after 60 s"
    sleep 1
  done
  step "ok: raft leader is $ADMIN, 3 voters"
fi
wait_for 90 "all three nodes serving with acked assignments" "$(serving "${NODES[@]}")"
status | jq -r '.nodes[] | "smoke:   \(.id) \(.device_class) requests=\(.requests) epoch sent=\(.sent_epoch) acked=\(.acked_epoch) accuracy=\(.accuracy | floor)%"'
classes=$(status | jq '[.nodes[].device_class] | unique | length')
[ "$classes" = 3 ] || fail "expected 3 device classes, got $classes"
plan=$(status | jq -c '.plan | {epoch, nodes, gap}')
step "plan $plan"

step "2. stop node-lite"
"${DC[@]}" stop -t 10 node-lite >/dev/null 2>&1
wait_for 45 "$ADMIN sees node-lite gone" '.nodes | map(select(.id == "node-lite" and .connected)) | length == 0'
before=$(node_field node-phone requests)
sleep 3
wait_for 30 "node-phone and node-laptop keep serving" \
  "(.nodes[] | select(.id == \"node-phone\") | .requests > $before) and ($(serving node-phone node-laptop))"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"${DC[@]}" start node-lite >/dev/null 2>&1
wait_for 60 "node-lite back and serving" "$(serving "${NODES[@]}")"
lite_logs=$(logs_of "$(cid_of node-lite)" "$started")
grep -q "resuming on the persisted assignment" <<<"$lite_logs" \
  || fail "node-lite did not resume on its persisted assignment (store volume)"
step "ok: node-lite resumed on the assignment persisted in its store"

step "3. cut node-phone's network for ${CUT_S} s"
phone=$(cid_of node-phone)
net="${PROJECT}_fleet"
restarts0=$(docker inspect -f '{{.RestartCount}} {{.State.StartedAt}}' "$phone")
rate=$(node_field node-phone requests_per_s)
req0=$(node_field node-phone requests)
cut_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
t0=$SECONDS
docker network disconnect "$net" "$phone"
wait_for 60 "$ADMIN sees node-phone unreachable" '.nodes | map(select(.id == "node-phone" and .connected)) | length == 0'
remaining=$((CUT_S - (SECONDS - t0)))
[ "$remaining" -le 0 ] || sleep "$remaining"
[ "$(docker inspect -f '{{.State.Running}}' "$phone")" = true ] || fail "node-phone stopped during the cut"
[ "$(docker inspect -f '{{.RestartCount}} {{.State.StartedAt}}' "$phone")" = "$restarts0" ] \
  || fail "node-phone restarted during the cut"
cut_logs=$(logs_of "$phone" "$cut_at")
grep -q "coordinator session ended" <<<"$cut_logs" || fail "node-phone's logs do not show the lost session"
if grep -qE "stopping on signal|panicked|ERROR" <<<"$cut_logs"; then fail "node-phone logged an error or stopped during the cut"; fi
step "ok: node-phone up through the cut; its logs:"
grep -E "session ended|redirected|connected" <<<"$cut_logs" | tail -4 | sed 's/^/smoke:   | /'
docker network connect "$net" "$phone"
wait_for 60 "node-phone rejoined and acks the current plan" "$(serving "${NODES[@]}")"
req1=$(node_field node-phone requests)
cut_s=$((SECONDS - t0))  # disconnect to the first report after rejoining: what req1 counts
served=$((req1 - req0))
need=$(jq -n --argjson r "$rate" --argjson s "$cut_s" '($r * $s * 0.5) | floor')
step "node-phone answered $served requests in the ${cut_s} s from the cut to its first report after it (rate $(printf %.1f "$rate")/s; at least $need expected)"
[ "$served" -ge "$need" ] || fail "node-phone did not keep serving while cut off"
step "ok: node-phone kept serving on its last assignment while cut off"

if [ "$RAFT" = 1 ]; then
  old=$ADMIN
  epoch0=$(status | jq '.plan.epoch')
  step "4. stop the leader $old"
  "${DC[@]}" stop -t 20 "$old" >/dev/null 2>&1
  others=(coord-0 coord-1 coord-2)
  deadline=$((SECONDS + 60))
  while :; do
    for r in "${others[@]}"; do
      [ "$r" != "$old" ] || continue
      l=$(admin_get "$r" /cluster | jq -r '.leader_name // empty' || true)
      if [ -n "$l" ] && [ "$l" != "$old" ]; then ADMIN=$l; break 2; fi
    done
    [ "$SECONDS" -lt "$deadline" ] || fail "no new leader 60 s after stopping $old"
    sleep 1
  done
  step "ok: new leader $ADMIN"
  # (Output captured first: grep -q would stop reading early, and pipefail would count that.)
  old_logs=$("${DC[@]}" logs --no-color "$old" 2>&1)
  grep -q "handed leadership over" <<<"$old_logs" || fail "$old did not hand leadership over on SIGTERM"
  step "ok: $old handed leadership over on SIGTERM"
  wait_for 90 "all nodes serving under $ADMIN with acked plans past epoch $epoch0" \
    "(.plan.epoch > $epoch0) and ($(serving "${NODES[@]}"))"
  "${DC[@]}" start "$old" >/dev/null 2>&1
  deadline=$((SECONDS + 60))
  until [ "$(admin_get "$old" /cluster | jq -r '.leader_name // empty' 2>/dev/null)" = "$ADMIN" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$old did not rejoin under $ADMIN"
    sleep 1
  done
  step "ok: $old rejoined as a follower of $ADMIN"
fi

step "5. down"
