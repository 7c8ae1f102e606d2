#!/bin/bash
# Container healthcheck, by what the server is now (a failover changes it): a writable server
# (the primary) is healthy when it answers; a read-only one (a replica) when both replication
# threads run (a replica still seeding, broken, fenced and not rejoined yet, or quarantined is
# not healthy).
set -euo pipefail
CNF=/var/lib/mysql/.healthcheck.cnf
[ -f "$CNF" ] || { echo "not initialised yet"; exit 1; }
read_only=$(mariadb --defaults-extra-file="$CNF" -N -B -e 'SELECT @@read_only')
[ "$read_only" = 1 ] || exit 0
status=$(mariadb --defaults-extra-file="$CNF" -e 'SHOW SLAVE STATUS\G')
grep -q 'Slave_IO_Running: Yes' <<<"$status" && grep -q 'Slave_SQL_Running: Yes' <<<"$status" && exit 0
echo "read-only and replication not running:"; grep -E 'Slave_(IO|SQL)_Running|Last_(IO|SQL)_Error' <<<"$status" || echo "no replication configured (waiting for the agent to make it a replica)"
exit 1
