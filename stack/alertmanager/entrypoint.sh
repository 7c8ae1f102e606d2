#!/bin/bash
# Alertmanager entrypoint: prepares the receivers' secret files, has alertmanager-config
# render the configuration, then runs Alertmanager as the unprivileged "prometheus" user.
#
#   entrypoint.sh [ALERTMANAGER FLAGS...]   render, then exec Alertmanager with the flags
#   entrypoint.sh render                    print the configuration
#   entrypoint.sh check                     render, print it, and run amtool check-config on it
#
# What the receivers are and how they are checked is alertmanager-config's (internal/receivers;
# docs/alerts.md lists the settings: ALERT_* and ALERTMANAGER_* variables, secret files in
# $ALERTMANAGER_SECRETS_DIR, /run/secrets, the stack's secrets/alertmanager/). Started as root,
# this script copies those files to a directory only the alertmanager user can read, whatever
# their owner and mode on the host, then drops root. The configuration names the files (*_file
# settings) and holds no secret. It is written to /run/alertmanager/alertmanager.yml (memory; the
# root filesystem is read-only), which the image's /etc/alertmanager/alertmanager.yml links to;
# a configuration of your own mounted over that path (not a link) is used as it is.
set -euo pipefail

TEMPLATE=${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.tmpl.yml}
CONFIG=/etc/alertmanager/alertmanager.yml
RENDERED=/run/alertmanager/alertmanager.yml
SECRETS_IN=${ALERTMANAGER_SECRETS_DIR:-/run/secrets}
SECRETS=$SECRETS_IN
RUN_AS=prometheus

# prepare_secrets: as root, private copies of the secret files in /run/alertmanager/secrets
# (memory), owned by the alertmanager user; otherwise the files are used where they are.
prepare_secrets() {
	[ "$(id -u)" = 0 ] || return 0
	SECRETS=/run/alertmanager/secrets
	mkdir -p "$SECRETS"
	rm -f "$SECRETS"/*
	local f
	for f in "$SECRETS_IN"/*; do
		if [ -f "$f" ] && [ -s "$f" ]; then
			install -m 0400 -o "$RUN_AS" -g "$RUN_AS" "$f" "$SECRETS/${f##*/}"
		fi
	done
	chown "$RUN_AS:$RUN_AS" "$SECRETS"
	chmod 0500 "$SECRETS"
}

render() {
	alertmanager-config --template "$TEMPLATE" --secrets "$SECRETS" "$@"
}

# write_config: render into $RENDERED, readable by the alertmanager user and nobody else.
write_config() {
	render --out "$RENDERED"
	if [ "$(id -u)" = 0 ]; then
		chown "root:$RUN_AS" "$RENDERED"
	fi
}

main() {
	if [ -e "$CONFIG" ] && [ ! -L "$CONFIG" ]; then
		# A configuration of the user's own, mounted read-only: used as it is.
		[ "${1:-}" = render ] && exec cat "$CONFIG"
		[ "${1:-}" = check ] && exec amtool check-config "$CONFIG"
		echo "alertmanager-entrypoint: using $CONFIG as mounted (not rendered from $TEMPLATE)" >&2
	else
		case ${1:-} in
		render)
			prepare_secrets
			render
			return
			;;
		check)
			prepare_secrets
			write_config
			cat "$CONFIG"
			exec amtool check-config "$CONFIG"
			;;
		esac
		prepare_secrets
		write_config
	fi
	local flags=("$@")
	if [ -n "${ALERTMANAGER_EXTERNAL_URL:-}" ]; then
		flags+=("--web.external-url=$ALERTMANAGER_EXTERNAL_URL")
	fi
	if [ "$(id -u)" = 0 ]; then
		exec setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups -- /usr/bin/prometheus-alertmanager "${flags[@]}"
	fi
	exec /usr/bin/prometheus-alertmanager "${flags[@]}"
}

main "$@"
