#!/bin/sh
# The `default` namespace on the compose file's Temporal server (the `temporal-namespace` job, admin-tools
# image, TEMPORAL_ADDRESS set). The server takes a while to start on a fresh database: ask for up to two
# minutes, then fail the job (and with it everything that waits for it).
set -u

tries=0
until temporal operator cluster health >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "the Temporal server at $TEMPORAL_ADDRESS did not answer within two minutes" >&2
        exit 1
    fi
    sleep 2
done
temporal operator namespace describe --namespace default >/dev/null 2>&1 \
    || temporal operator namespace create --namespace default --retention 30d
echo "namespace default ready"
