#!/bin/bash
# Container healthcheck. The primary is healthy when it answers; the replica when both
# replication threads run (a replica still seeding or broken is not healthy).
set -euo pipefail
CNF=/var/lib/mysql/.healthcheck.cnf
[ -f "$CNF" ] || { echo "not initialised yet"; exit 1; }
if [ "${DB_ROLE:-}" != replica ]; then
	exec mariadb-admin --defaults-extra-file="$CNF" ping
fi
status=$(mariadb --defaults-extra-file="$CNF" -e 'SHOW SLAVE STATUS\G')
grep -q 'Slave_IO_Running: Yes' <<<"$status" && grep -q 'Slave_SQL_Running: Yes' <<<"$status" && exit 0
echo "replication not running:"; grep -E 'Slave_(IO|SQL)_Running|Last_(IO|SQL)_Error' <<<"$status"
exit 1
