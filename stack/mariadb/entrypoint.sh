#!/bin/bash
# MariaDB entrypoint for both roles.
#
# First start (empty data directory):
#   primary: initialise, create the users and the application schema.
#   replica: initialise, create the same users, copy the application data from the primary with a
#            consistent mariadb-dump that records its GTID position, then replicate from there.
# A replica whose volume is wiped therefore re-seeds itself and catches up with no manual step.
# Initialisation runs on a socket-only server without binary logging, so none of it is replicated
# and both servers' GTID histories start clean. A data directory without the completion marker was
# left by an interrupted first start and is initialised again.
#
# Which server is the primary is decided by the agent's roles file when there is one
# ($DB_ROLES_DIR/primary, the primary's address, written at each failover and switchover): a
# server it does not name starts read-only, as a replica of the one it names, whoever starts it
# (fencing: an old primary never takes a write again). Without the file, DB_ROLE decides.
#
# Environment: DB_ROLE (primary|replica, the initial role), DB_SERVER_ID, DB_PRIMARY_HOST (the
# initial primary's address), DB_ADDRESS (this server's), DB_ROLES_DIR, DB_AGENT_HOST (where the
# agent connects from: its account's host).
# Secrets (files, mode 0600): /run/secrets/{root,app,repl,exporter}_password; agent_password
# (optional: without it the agent has no account and cannot fail over).
set -euo pipefail

ROLE=${DB_ROLE:?DB_ROLE must be primary or replica}
SERVER_ID=${DB_SERVER_ID:?DB_SERVER_ID must be set}
PRIMARY=${DB_PRIMARY_HOST:-db_master}
ADDRESS=${DB_ADDRESS:-}
ROLES_DIR=${DB_ROLES_DIR:-/var/lib/hastack-db}
AGENT_HOST=${DB_AGENT_HOST:-}
DATADIR=/var/lib/mysql
MARKER=$DATADIR/.hastack-initialized
# Grants narrowed after first release (repl and exporter had SELECT ON *.*, mysql.* included):
# a data directory made before gets them narrowed once at its next start.
GRANTS_MARKER=$DATADIR/.hastack-grants-v2
SOCK=/run/mysqld/init.sock

log() { printf '%s entrypoint[%s]: %s\n' "$(date -u +%FT%TZ)" "$ROLE" "$*" >&2; }
die() { log "error: $*"; exit 1; }

secret() {
	local f=/run/secrets/$1
	[ -s "$f" ] || die "secret $f is missing or empty: the secrets-init service generates it (docker compose up secrets-init)"
	cat "$f"
}

case "$ROLE" in primary | replica) ;; *) die "DB_ROLE=$ROLE: want primary or replica" ;; esac

# The roles file, when there is one, overrides DB_ROLE. The agent writes it in place: an empty
# read is a write in progress, read again.
if [ -n "$ADDRESS" ] && [ -f "$ROLES_DIR/primary" ]; then
	named=""
	for _ in 1 2 3 4 5; do
		named=$(tr -d '[:space:]' <"$ROLES_DIR/primary")
		[ -z "$named" ] || break
		sleep 0.2
	done
	if [ -z "$named" ]; then
		# A roles file that says nothing: never start writable on a guess.
		ROLE=replica
		log "the roles file is empty: starting read-only (the agent makes this server what it is)"
	elif [ "$named" = "$ADDRESS" ]; then
		ROLE=primary
		log "the roles file names this server the primary"
	else
		ROLE=replica
		PRIMARY=$named
		log "the roles file names $named the primary: starting as its replica (read-only)"
	fi
fi

ROOT_PW=$(secret root_password)
APP_PW=$(secret app_password)
REPL_PW=$(secret repl_password)
EXPORTER_PW=$(secret exporter_password)
AGENT_PW=""
[ ! -s /run/secrets/agent_password ] || AGENT_PW=$(cat /run/secrets/agent_password)

# The image runs as mysql; started as root (an override), the server still drops to mysql.
as_mysql=()
if [ "$(id -u)" = 0 ]; then as_mysql=(--user=mysql); fi

# Each server numbers new rows apart (offset = server id, step 2): an id the old primary handed
# out is never handed out again by the new one after a failover.
args=("${as_mysql[@]}" --datadir="$DATADIR" --server-id="$SERVER_ID" --report-host="$(hostname)"
	--auto-increment-increment=2 --auto-increment-offset="$SERVER_ID")
# A server that starts as a replica after a crash drops from its binary log the transactions it
# had prepared but not committed (--init-rpl-role=SLAVE with rpl_semi_sync_slave_enabled: MariaDB's
# semi-sync replica recovery). Those are the writes a killed or frozen primary was waiting to
# have acknowledged, which no client was told were committed and which the promoted replica may
# not have: kept, they would make the fenced old primary's history diverge (measured: without
# it, a killed primary came back quarantined). A primary keeps them: its replica may have them.
if [ "$ROLE" = primary ]; then
	args+=(--rpl-semi-sync-master-enabled=ON)
else
	args+=(--read-only=ON --rpl-semi-sync-master-enabled=OFF --init-rpl-role=SLAVE)
fi

# sql_quote escapes a value for a single-quoted SQL string literal.
sql_quote() { printf "%s" "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }

users_sql() {
	local hc_pw=$1
	cat <<-EOF
		SET sql_log_bin = 0;
		DELETE FROM mysql.global_priv WHERE User IN ('', 'mysql') OR (User = 'root' AND Host <> 'localhost');
		FLUSH PRIVILEGES;
		ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('$(sql_quote "$ROOT_PW")');
		CREATE USER 'app'@'%' IDENTIFIED BY '$(sql_quote "$APP_PW")';
		CREATE USER 'repl'@'%' IDENTIFIED BY '$(sql_quote "$REPL_PW")';
		CREATE USER 'exporter'@'%' IDENTIFIED BY '$(sql_quote "$EXPORTER_PW")' WITH MAX_USER_CONNECTIONS 3;
		CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY '$(sql_quote "$hc_pw")';
		-- the application: reads and writes its own schema, nothing else
		GRANT SELECT, INSERT, UPDATE, DELETE ON app.* TO 'app'@'%';
		-- replication, and the consistent dump a new replica seeds itself from: the application's
		-- schema only (never mysql.*, which holds every password hash); RELOAD for the dump's
		-- brief FLUSH TABLES WITH READ LOCK. A schema you add: GRANT the same ON it to repl.
		GRANT REPLICATION SLAVE, BINLOG MONITOR, RELOAD ON *.* TO 'repl'@'%';
		GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON app.* TO 'repl'@'%';
		-- mysqld_exporter: server status and the performance schema, no table data
		GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'exporter'@'%';
		GRANT SELECT ON performance_schema.* TO 'exporter'@'%';
		-- the container healthcheck: liveness and replication state only
		GRANT SLAVE MONITOR ON *.* TO 'healthcheck'@'localhost';
		FLUSH PRIVILEGES;
	EOF
}

# agent_sql creates or updates the agent's account: replication administration (read_only,
# CHANGE MASTER, START/STOP SLAVE, RESET SLAVE ALL needs RELOAD, the semi-sync switch), the
# replication state, and REPLICATION SLAVE for the binlog archive (it follows the primary's
# binary log as a replica does); no table, no SELECT. Not replicated: each server has its own.
# AGENT_GRANTS names this set: a change of it updates existing servers (the marker's digest).
AGENT_GRANTS="READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, SLAVE MONITOR, BINLOG MONITOR, RELOAD, REPLICATION SLAVE"
agent_sql() {
	cat <<-EOF
		SET sql_log_bin = 0;
		CREATE USER IF NOT EXISTS 'agent'@'$(sql_quote "$AGENT_HOST")' IDENTIFIED BY '$(sql_quote "$AGENT_PW")';
		ALTER USER 'agent'@'$(sql_quote "$AGENT_HOST")' IDENTIFIED BY '$(sql_quote "$AGENT_PW")';
		GRANT $AGENT_GRANTS ON *.* TO 'agent'@'$(sql_quote "$AGENT_HOST")';
		FLUSH PRIVILEGES;
	EOF
}

app_schema_sql() {
	cat <<-'EOF'
		SET sql_log_bin = 0;
		CREATE DATABASE IF NOT EXISTS app CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
		CREATE TABLE IF NOT EXISTS app.visits (
		  id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
		  server     VARCHAR(32)     NOT NULL,
		  client     VARCHAR(64)     NOT NULL DEFAULT '',
		  visited_at TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
		  KEY visited_at (visited_at)
		) ENGINE=InnoDB;
	EOF
}

start_temp_server() {
	mariadbd "${as_mysql[@]}" --datadir="$DATADIR" --skip-networking --socket="$SOCK" \
		--skip-log-bin --skip-slave-start --server-id="$SERVER_ID" &
	TEMP_PID=$!
	for _ in $(seq 1 60); do
		mariadb-admin --socket="$SOCK" -uroot ping >/dev/null 2>&1 && return 0
		kill -0 "$TEMP_PID" 2>/dev/null || die "temporary server exited during initialisation"
		sleep 1
	done
	die "temporary server did not answer within 60 s"
}

stop_temp_server() {
	kill "$TEMP_PID"
	wait "$TEMP_PID" || true
}

wait_for_primary() {
	local deadline=$((SECONDS + 300))
	until MYSQL_PWD=$REPL_PW mariadb-admin -h "$PRIMARY" -u repl --connect-timeout=2 ping >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "primary $PRIMARY not reachable as repl after 300 s; check db_master's logs"
		sleep 2
	done
}

seed_from_primary() {
	wait_for_primary
	local dbs
	dbs=$(MYSQL_PWD=$REPL_PW mariadb -h "$PRIMARY" -u repl -N -B -e \
		"SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ('mysql','information_schema','performance_schema','sys')")
	[ -n "$dbs" ] || die "primary has no application schema to copy"
	log "seeding from $PRIMARY: ${dbs//$'\n'/ }"
	# --master-data=1 with --gtid writes SET GLOBAL gtid_slave_pos to the dump's snapshot position.
	# shellcheck disable=SC2086
	MYSQL_PWD=$REPL_PW mariadb-dump -h "$PRIMARY" -u repl --single-transaction --master-data=1 --gtid \
		--routines --events --triggers --hex-blob --default-character-set=utf8mb4 --databases $dbs \
		| mariadb --socket="$SOCK" -uroot --init-command='SET sql_log_bin=0'
	mariadb --socket="$SOCK" -uroot <<-EOF
		CHANGE MASTER TO MASTER_HOST='$(sql_quote "$PRIMARY")', MASTER_PORT=3306, MASTER_USER='repl',
		  MASTER_PASSWORD='$(sql_quote "$REPL_PW")', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=5;
	EOF
	log "seeded at gtid_slave_pos $(mariadb --socket="$SOCK" -uroot -N -B -e 'SELECT @@gtid_slave_pos')"
}

initialise() {
	log "initialising $DATADIR"
	# (Binary logs set aside for a re-seed stay: they hold the diverged transactions.)
	find "$DATADIR" -mindepth 1 -maxdepth 1 ! -name 'diverged-*' -exec rm -rf {} +
	[ "$(id -u)" != 0 ] || chown mysql:mysql "$DATADIR"
	mariadb-install-db "${as_mysql[@]}" --datadir="$DATADIR" --skip-test-db --auth-root-authentication-method=normal >/dev/null
	start_temp_server
	local hc_pw
	hc_pw=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
	users_sql "$hc_pw" | mariadb --socket="$SOCK" -uroot
	if [ "$ROLE" = primary ]; then
		app_schema_sql | MYSQL_PWD=$ROOT_PW mariadb --socket="$SOCK" -uroot
	else
		MYSQL_PWD=$ROOT_PW
		export MYSQL_PWD
		seed_from_primary
		unset MYSQL_PWD
	fi
	(umask 077 && printf '[client]\nuser=healthcheck\npassword=%s\nsocket=/run/mysqld/mysqld.sock\n' "$hc_pw" >"$DATADIR/.healthcheck.cnf")
	stop_temp_server
	touch "$MARKER"
	log "initialised"
}

narrow_grants_sql() {
	cat <<-'EOF'
		SET sql_log_bin = 0;
		REVOKE SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON *.* FROM 'repl'@'%';
		GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON app.* TO 'repl'@'%';
		REVOKE SELECT ON *.* FROM 'exporter'@'%';
		GRANT SELECT ON performance_schema.* TO 'exporter'@'%';
		FLUSH PRIVILEGES;
	EOF
}

# A re-seed the agent asked for (`agent db reseed`: a quarantined server copies the primary's
# data again), carried out once per request token and only by a server that starts as a
# replica. Its binary logs are set aside in the volume first: they hold the transactions that
# diverged, for the operator to read with mariadb-binlog.
RESEED_DONE=$DATADIR/.hastack-reseed
reseed_token=""
if [ -n "$ADDRESS" ] && [ "$ROLE" = replica ] && [ -f "$ROLES_DIR/reseed" ]; then
	reseed_token=$(awk -v a="$ADDRESS" '$1 == a { print $2 }' "$ROLES_DIR/reseed")
	case "$reseed_token" in
	*[!A-Za-z0-9-]*) die "the re-seed request for $ADDRESS is not a token: $reseed_token" ;;
	esac
fi
if [ -n "$reseed_token" ] && [ -f "$MARKER" ] && [ "$(cat "$RESEED_DONE" 2>/dev/null)" != "$reseed_token" ]; then
	log "re-seed $reseed_token asked for by the agent: binary logs set aside as diverged-$reseed_token-*"
	for f in "$DATADIR"/mariadb-bin.[0-9]*; do
		[ -e "$f" ] || continue
		mv "$f" "$DATADIR/diverged-$reseed_token-${f##*/}"
	done
	rm -f "$MARKER"
fi

if [ ! -f "$MARKER" ]; then
	initialise
	touch "$GRANTS_MARKER"
	[ -z "$reseed_token" ] || printf '%s\n' "$reseed_token" >"$RESEED_DONE"
elif [ ! -f "$GRANTS_MARKER" ]; then
	log "narrowing the repl and exporter grants (one time)"
	start_temp_server
	narrow_grants_sql | MYSQL_PWD=$ROOT_PW mariadb --socket="$SOCK" -uroot
	stop_temp_server
	touch "$GRANTS_MARKER"
fi

# The agent's account, made or updated when its host, password or grants changed (the marker
# holds a digest of the three).
if [ -n "$AGENT_PW" ] && [ -n "$AGENT_HOST" ]; then
	agent_digest=$(printf '%s\n%s\n%s' "$AGENT_HOST" "$AGENT_PW" "$AGENT_GRANTS" | sha256sum | cut -d' ' -f1)
	if [ "$(cat "$DATADIR/.hastack-agent-account" 2>/dev/null)" != "$agent_digest" ]; then
		log "creating the agent's account for $AGENT_HOST"
		start_temp_server
		agent_sql | MYSQL_PWD=$ROOT_PW mariadb --socket="$SOCK" -uroot
		stop_temp_server
		(umask 077 && printf '%s\n' "$agent_digest" >"$DATADIR/.hastack-agent-account")
	fi
fi
exec mariadbd "${args[@]}"
