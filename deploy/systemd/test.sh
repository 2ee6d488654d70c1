#!/usr/bin/env bash
# Runs both units under a real systemd, inside a container made from mcdnn:latest (whose paths are
# the packaged ones the units expect) plus Debian's systemd: installs the units, the sysusers
# file, an identity and env files as the unit comments say, then checks that
#   - both services start with their hardening and the node serves under the coordinator;
#   - the node, killed, is restarted (Restart=on-failure) and resumes on its persisted assignment;
#   - both stop cleanly on SIGTERM.
# Limits: an unprivileged container cannot make mount namespaces, so systemd skips
# ProtectSystem=, PrivateTmp= and the other filesystem sandboxing here (seccomp, capabilities,
# NoNewPrivileges and MemoryDenyWriteExecute do apply). Needs: docker, mcdnn:latest, Debian's
# archive reachable from a container (for apt-get install systemd; the image is cached after).
set -euo pipefail
cd "$(dirname "$0")"
IMAGE=${MCDNN_IMAGE:-mcdnn:latest}
TEST_IMAGE=mcdnn-systemd-test:latest
C=mcdnn-systemd-test-$$

fail() { echo "systemd-test: FAIL: $*" >&2; docker exec "$C" journalctl --no-pager -n 40 -u 'mcdnn-*' >&2 || true; exit 1; }
step() { echo "systemd-test: $*"; }

ctx=$(mktemp -d)
trap 'docker rm -f "$C" >/dev/null 2>&1 || true; rm -rf "$ctx"' EXIT
cat >"$ctx/Dockerfile" <<EOF
FROM $IMAGE
USER root
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      systemd systemd-sysv >/dev/null && rm -rf /var/lib/apt/lists/*
ENTRYPOINT []
CMD ["/sbin/init"]
EOF
DOCKER_BUILDKIT=0 docker build -q -t "$TEST_IMAGE" "$ctx" >/dev/null 2>&1 || fail "building $TEST_IMAGE"

docker run -d --name "$C" -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
  "$TEST_IMAGE" >/dev/null
for _ in $(seq 30); do
  state=$(docker exec "$C" systemctl is-system-running 2>/dev/null || true)
  case $state in running|degraded) break ;; esac
  sleep 1
done
step "systemd is $state"

docker cp mcdnn-node.service "$C:/etc/systemd/system/"
docker cp mcdnn-coordinator.service "$C:/etc/systemd/system/"
docker cp mcdnn.sysusers.conf "$C:/usr/lib/sysusers.d/mcdnn.conf"
docker cp node.env.example "$C:/etc/mcdnn-node.env.example"
docker cp coordinator.env.example "$C:/etc/mcdnn-coordinator.env.example"
docker exec "$C" bash -euc '
  systemd-analyze verify /etc/systemd/system/mcdnn-node.service /etc/systemd/system/mcdnn-coordinator.service
  systemd-sysusers
  mkdir -p /etc/mcdnn/identity && cd "$(mktemp -d)"
  mcdnnctl ca init --dir ca >/dev/null
  mcdnnctl enroll coordinator coord-0 --dir ca --out /etc/mcdnn/identity >/dev/null
  mcdnnctl enroll node cam-0001 --dir ca --out /etc/mcdnn/identity >/dev/null
  mcdnnctl enroll operator ops --role read-only --dir ca --out /etc/mcdnn/identity >/dev/null
  # The shipped examples, pointed at one replica on loopback.
  sed -e "s/^MCDNN_LISTEN=.*/MCDNN_LISTEN=127.0.0.1:7400/" -e "s/^MCDNN_ADMIN=.*/MCDNN_ADMIN=127.0.0.1:7480/" \
      -e "s/^MCDNN_RAFT_LISTEN=.*/MCDNN_RAFT_LISTEN=127.0.0.1:7500/" -e "s/^MCDNN_PEERS=.*/MCDNN_PEERS=coord-0=127.0.0.1/" \
      -e "s/^MCDNN_BOOTSTRAP=.*/MCDNN_BOOTSTRAP=true/" \
      /etc/mcdnn-coordinator.env.example >/etc/mcdnn/coordinator.env
  sed -e "s/^MCDNN_COORDINATORS=.*/MCDNN_COORDINATORS=127.0.0.1:7400/" -e "s/^MCDNN_SHIFT_S=.*/MCDNN_SHIFT_S=3600/" \
      /etc/mcdnn-node.env.example >/etc/mcdnn/node.env
  chown -R root:mcdnn /etc/mcdnn && chmod 0750 /etc/mcdnn/identity && chmod 0640 /etc/mcdnn/identity/* /etc/mcdnn/*.env
  systemctl daemon-reload
  systemctl enable --now mcdnn-coordinator.service mcdnn-node.service 2>/dev/null
' || fail "installing the units"

status() { docker exec "$C" mcdnnctl api /status --admin 127.0.0.1:7480 --identity-dir /etc/mcdnn/identity --identity ops 2>/dev/null; }
wait_serving() {
  for _ in $(seq 40); do
    if status | jq -e '.nodes[] | select(.id == "cam-0001" and .connected and .requests > 0 and .acked_epoch > 0)' >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  return 1
}
wait_serving || fail "cam-0001 not serving under coord-0"
step "ok: both services active; cam-0001 serving: $(status | jq -c '.nodes[0] | {requests, acked_epoch}')"
pid=$(docker exec "$C" systemctl show -p MainPID --value mcdnn-node)
sec=$(docker exec "$C" grep -E '^(NoNewPrivs|Seccomp|CapEff):' "/proc/$pid/status" | tr -s '\t\n' '  ')
step "ok: node sandbox: $sec"
docker exec "$C" systemd-analyze security --no-pager mcdnn-node.service mcdnn-coordinator.service | tail -2 | sed 's/^/systemd-test:   /'

docker exec "$C" bash -c "kill -9 $pid"
sleep 8
[ "$(docker exec "$C" systemctl show -p NRestarts --value mcdnn-node)" -ge 1 ] || fail "the killed node was not restarted"
journal=$(docker exec "$C" journalctl --no-pager -u mcdnn-node)
grep -q "resuming on the persisted assignment" <<<"$journal" \
  || fail "the restarted node did not resume on its persisted assignment"
wait_serving || fail "the restarted node is not serving"
step "ok: killed node restarted (Restart=on-failure) and resumed on its persisted assignment"

docker exec "$C" systemctl stop mcdnn-node.service mcdnn-coordinator.service
for u in mcdnn-node mcdnn-coordinator; do
  r=$(docker exec "$C" systemctl show -p Result --value "$u")
  [ "$r" = success ] || fail "$u stopped with result $r"
done
step "ok: both stopped cleanly on SIGTERM"
step "PASS"
