#!/bin/bash
# Generates the stack's secrets into /secrets (the host's stack/secrets/, git-ignored) on first
# start and keeps them on later starts. Each consumer gets a directory holding only what it needs,
# owned by the user it runs as, mode 0700 (directory) / 0400 (files):
#   db/              root, app, repl and exporter passwords (MariaDB entrypoint, runs as root)
#   web/             the app user's password (PHP, www-data = uid 33)
#   mysql_exporter/  my.cnf for the exporter user (nobody = uid 65534)
#   grafana/         Grafana's admin password (the official image's uid 472)
# The files in db/ are the source of truth; the others are derived from them on every start.
set -euo pipefail
umask 077
S=/secrets
log() { printf 'secrets-init: %s\n' "$*" >&2; }

gen() {
	local f=$1
	[ -s "$f" ] && return 0
	head -c 64 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 32 >"$f"
	log "generated $f"
}

place() { # place OWNER_UID DIR: fix a consumer directory's ownership and modes
	chown -R "$1:$1" "$S/$2"
	chmod 0700 "$S/$2"
	find "$S/$2" -type f -exec chmod 0400 {} +
}

mkdir -p "$S/db" "$S/web" "$S/mysql_exporter" "$S/grafana"
chmod 0700 "$S"
for name in root app repl exporter; do gen "$S/db/${name}_password"; done
gen "$S/grafana/admin_password"

install -m 0600 "$S/db/app_password" "$S/web/db_app_password"
{
	printf '[client]\nuser=exporter\npassword=%s\n' "$(cat "$S/db/exporter_password")"
} >"$S/mysql_exporter/my.cnf"

place 0 db
place 33 web
place 65534 mysql_exporter
place 472 grafana
log "secrets ready in stack/secrets/ (read the database root password with: sudo cat stack/secrets/db/root_password)"
