#!/bin/sh
# Start the player of a Kubernetes StatefulSet pod: `cicada-statefulset program.py [args...]`.
#
# The rank is the pod's ordinal (HOSTNAME player-2 gives rank 2); the player listens on its own
# stable DNS name, <pod>.<service>:<port>, and rank 0 is <set>-0.<service>:<port> unless
# CICADA_ROOT_ADDRESS says otherwise.  CICADA_WORLD_SIZE (and CICADA_TOKEN) come from the pod's
# environment.  With TLS, the pod's own key is /var/run/cicada/identity/player-<rank>.pem and
# every .cert in /var/run/cicada/trusted is trusted.
set -eu
ordinal="${HOSTNAME##*-}"
case "$ordinal" in
    ''|*[!0-9]*) echo "cicada-statefulset: cannot read a rank from HOSTNAME=$HOSTNAME" >&2; exit 2 ;;
esac
: "${CICADA_SERVICE:?set CICADA_SERVICE to the headless Service's name}"
port="${CICADA_PORT:-25000}"
if [ -z "${CICADA_ROOT_ADDRESS:-}" ]; then
    CICADA_ROOT_ADDRESS="tcp://${HOSTNAME%-*}-0.${CICADA_SERVICE}:${port}"
    export CICADA_ROOT_ADDRESS
fi
identity_dir="${CICADA_IDENTITY_DIR:-/var/run/cicada/identity}"
trusted_dir="${CICADA_TRUSTED_DIR:-/var/run/cicada/trusted}"
tls=""
if [ -f "$identity_dir/player-$ordinal.pem" ]; then
    tls="--identity $identity_dir/player-$ordinal.pem"
fi
if [ -d "$trusted_dir" ]; then
    trusted=""
    for cert in "$trusted_dir"/*.cert; do
        [ -f "$cert" ] && trusted="${trusted:+$trusted,}$cert"
    done
    [ -n "$trusted" ] && tls="$tls --trusted=$trusted"
fi
# shellcheck disable=SC2086  # $tls holds whole options
exec cicada-async start --rank "$ordinal" --address "tcp://${HOSTNAME}.${CICADA_SERVICE}:${port}" $tls -- "$@"
