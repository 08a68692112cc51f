#!/bin/sh
# Temporal's schema in its PostgreSQL (run by the `temporal-schema` job with the admin-tools image,
# whose temporal-sql-tool and schema files match the server's version). The same steps as the
# deprecated auto-setup image, every one safe to repeat: a database that exists is left, a schema
# already at the newest version is not changed. Environment: TEMPORAL_DB_HOST, TEMPORAL_DB_USER,
# TEMPORAL_DB_PASSWORD.
set -eu

SCHEMA=/etc/temporal/schema/postgresql/v12
sql() {
    temporal-sql-tool --plugin postgres12 --ep "$TEMPORAL_DB_HOST" -p 5432 \
        -u "$TEMPORAL_DB_USER" --pw "$TEMPORAL_DB_PASSWORD" "$@"
}

for db in temporal:temporal temporal_visibility:visibility; do
    name=${db%%:*}
    schema=${db##*:}
    sql --db "$name" create-database || echo "database $name exists"
    sql --db "$name" setup-schema -v 0.0
    sql --db "$name" update-schema -d "$SCHEMA/$schema/versioned"
done
echo "Temporal schema ready"
