#!/bin/bash
# Generates the stack's secrets into /secrets (the host's stack/secrets/, git-ignored) on first
# start and keeps them on later starts. Each consumer gets a directory holding only what it needs,
# owned by the user it runs as, mode 0700 (directory) / 0400 (files):
#   db/              root, app, repl, exporter and agent passwords (MariaDB, mysql = uid 100)
#   web/             the app user's password (PHP, www-data = uid 33)
#   mysql_exporter/  my.cnf for the exporter user (nobody = uid 65534)
#   grafana/         Grafana's admin password (the official image's uid 472)
#   objectstore/     the bundled S3 store's secret key (uid 10001); the agent reads it as root
# The files in db/ are the source of truth; the others are derived from them on every start.
# Every write is atomic (a temporary file with its final owner and mode, renamed into place) and
# skipped when the content is unchanged: services read these files while this runs again (it is
# a dependency of most services, so Compose runs it before each of them starts).
set -euo pipefail
umask 077
S=/secrets
log() { printf 'secrets-init: %s\n' "$*" >&2; }

# put OWNER_UID FILE: write stdin to FILE (mode 0400, owned by OWNER_UID), atomically, unless
# FILE already holds exactly that.
put() {
	local owner=$1 f=$2 tmp
	tmp=$(mktemp "$f.XXXXXX")
	cat >"$tmp"
	if [ -f "$f" ] && cmp -s "$tmp" "$f" && [ "$(stat -c '%u %a' "$f")" = "$owner 400" ]; then
		rm -f "$tmp"
		return 0
	fi
	chown "$owner:$owner" "$tmp"
	chmod 0400 "$tmp"
	mv -f "$tmp" "$f"
}

gen() { # gen OWNER_UID FILE: a new random password, unless FILE has one (then only its owner and mode are set)
	if [ -s "$2" ]; then
		chown "$1:$1" "$2"
		chmod 0400 "$2"
		return 0
	fi
	local pw
	pw=$(head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')
	printf '%s' "${pw:0:32}" | put "$1" "$2"
	log "generated $2"
}

dir() { # dir OWNER_UID NAME: a consumer's directory
	mkdir -p "$S/$2"
	chown "$1:$1" "$S/$2"
	chmod 0700 "$S/$2"
}

chmod 0700 "$S"
dir 100 db
dir 33 web
dir 65534 mysql_exporter
dir 472 grafana
dir 10001 objectstore
for name in root app repl exporter agent; do gen 100 "$S/db/${name}_password"; done
gen 472 "$S/grafana/admin_password"
gen 10001 "$S/objectstore/secret_key"
put 33 "$S/web/db_app_password" <"$S/db/app_password"
printf '[client]\nuser=exporter\npassword=%s\n' "$(cat "$S/db/exporter_password")" | put 65534 "$S/mysql_exporter/my.cnf"
log "secrets ready in stack/secrets/ (read the database root password with: sudo cat stack/secrets/db/root_password)"
