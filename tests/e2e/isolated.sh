#!/usr/bin/env bash
# Runs a command inside a fresh network namespace that has only a loopback interface, so the
# browsers' WebRTC traffic and the server can only ever reach 127.0.0.1 / ::1
# (see the team's browser-testing notes: namespace + --allow-loopback-in-peer-connection +
# media permissions + iceServers: []).
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then ns=(unshare -n); else ns=(unshare -rn); fi
exec "${ns[@]}" sh -c 'ip link set lo up && exec "$@"' sh "$@"
