#!/bin/sh
# Makes the Redis Cluster of SalesPulse's Redis Cluster variant, once: its masters are the
# arguments (host:port, three or more), no replicas. Run by the compose variant's
# redis-cluster-init service and the Kubernetes variant's Job; run again, it finds the
# cluster made and changes nothing. The password, if any, comes in REDISCLI_AUTH.
#
#   create-cluster.sh redis:6379 redis-2:6379 redis-3:6379
set -eu

[ "$#" -ge 3 ] || { echo "usage: $0 host:port host:port host:port [...]" >&2; exit 2; }
first_host=${1%:*}
first_port=${1##*:}

state_ok() {
    redis-cli -h "$first_host" -p "$first_port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

masters=""
for node in "$@"; do
    host=${node%:*}
    port=${node##*:}
    # The nodes may still be starting (a pod scheduled late): wait for each to answer.
    tries=0
    until redis-cli -h "$host" -p "$port" ping 2>/dev/null | grep -q PONG; do
        tries=$((tries + 1))
        [ "$tries" -le 120 ] || { echo "$node never answered" >&2; exit 1; }
        sleep 1
    done
    # CLUSTER MEET takes an address, not a name: resolve each (a name that no longer
    # resolves after the cluster is made is fine, the nodes keep talking by address).
    address=$(getent hosts "$host" 2>/dev/null | awk '{ print $1; exit }') || address=""
    masters="$masters ${address:-$host}:$port"
done

if state_ok; then
    echo "the Redis Cluster is already made"
    exit 0
fi
# shellcheck disable=SC2086  # one argument per master
redis-cli --cluster create $masters --cluster-replicas 0 --cluster-yes
tries=0
until state_ok; do
    tries=$((tries + 1))
    [ "$tries" -le 120 ] || { echo "the cluster never reached cluster_state:ok" >&2; exit 1; }
    sleep 1
done
echo "the Redis Cluster is made:$masters"
