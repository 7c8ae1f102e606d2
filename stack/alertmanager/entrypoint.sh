#!/bin/bash
# Alertmanager entrypoint: renders the configuration from alertmanager.tmpl.yml, then runs
# Alertmanager as the unprivileged "prometheus" user.
#
#   entrypoint.sh [ALERTMANAGER FLAGS...]   render, then exec Alertmanager with the flags
#   entrypoint.sh render                    render, and print the configuration
#   entrypoint.sh check                     render, print it, and run amtool check-config on it
#
# Receivers are switched on by what exists (docs/alerts.md):
#   Slack          secret file slack_webhook_url                     [ALERT_SLACK_CHANNEL]
#   e-mail         ALERT_EMAIL_TO, ALERT_EMAIL_FROM, ALERT_SMTP_SMARTHOST (host:port)
#                  [ALERT_SMTP_USERNAME, secret file smtp_password, ALERT_SMTP_REQUIRE_TLS=true]
#                  (instead of ALERT_SLACK_CHANNEL, ALERT_EMAIL_TO, ALERT_EMAIL_FROM,
#                  ALERT_SMTP_SMARTHOST and ALERT_SMTP_USERNAME, files named slack_channel,
#                  email_to, email_from, smtp_smarthost and smtp_username may hold the values)
#   dead man's switch  secret file watchdog_url: receives the always-firing Watchdog
# The secret files are read from $ALERTMANAGER_SECRETS_DIR (/run/secrets, the stack's
# secrets/alertmanager/). Started as root, the entrypoint copies them to a directory only the
# alertmanager user can read, whatever their owner and mode on the host, then drops root.
# The rendered configuration names those files (*_file settings) and holds no secret; no
# secret is ever printed.
# Group timings: ALERTMANAGER_GROUP_WAIT, ALERTMANAGER_GROUP_INTERVAL,
# ALERTMANAGER_REPEAT_INTERVAL, ALERTMANAGER_WATCHDOG_INTERVAL (durations such as 30s, 5m, 4h).
# ALERTMANAGER_EXTERNAL_URL: the URL people reach Alertmanager at, for links in notifications.
# The rendered configuration is written to /run/alertmanager/alertmanager.yml (memory; the root
# filesystem is read-only), which the image's /etc/alertmanager/alertmanager.yml links to. A
# configuration file of your own mounted over /etc/alertmanager/alertmanager.yml (not a link) is
# used as it is, without rendering.
set -euo pipefail

TEMPLATE=${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.tmpl.yml}
CONFIG=/etc/alertmanager/alertmanager.yml
RENDERED=/run/alertmanager/alertmanager.yml
SECRETS_IN=${ALERTMANAGER_SECRETS_DIR:-/run/secrets}
RUN_AS=prometheus
log() { printf '%s alertmanager-entrypoint: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# setting VAR FILE: $VAR, else the first line of the file FILE in the secrets directory.
setting() {
	local v=${!1:-}
	if [ -z "$v" ] && [ -r "$SECRETS_IN/$2" ]; then
		IFS= read -r v <"$SECRETS_IN/$2" || true
	fi
	v=${v%$'\r'}
	# Trim surrounding blanks.
	v=${v#"${v%%[![:space:]]*}"}
	v=${v%"${v##*[![:space:]]}"}
	printf '%s' "$v"
}

# quote VALUE: VALUE as a YAML double-quoted string.
quote() {
	local v=$1
	case $v in *[[:cntrl:]]*) die "a setting contains a control character: remove it" ;; esac
	v=${v//\\/\\\\}
	v=${v//\"/\\\"}
	printf '"%s"' "$v"
}

duration_ok() { [[ $1 =~ ^([0-9]+(ms|s|m|h|d|w|y))+$ ]]; }

secret_file() { [ -s "$SECRETS_IN/$1" ] && [ -r "$SECRETS_IN/$1" ]; }

# prepare_secrets: the secret files the alertmanager user will read. As root: private copies in
# $SECRETS (memory-backed when the compose file mounts a tmpfs there), owned by that user.
# Otherwise the files are used where they are.
prepare_secrets() {
	if [ "$(id -u)" != 0 ]; then
		SECRETS=$SECRETS_IN
		return
	fi
	SECRETS=/run/alertmanager/secrets
	mkdir -p "$SECRETS"
	rm -f "$SECRETS"/*
	local f
	for f in slack_webhook_url smtp_password watchdog_url; do
		if secret_file "$f"; then
			install -m 0400 -o "$RUN_AS" -g "$RUN_AS" "$SECRETS_IN/$f" "$SECRETS/$f"
		fi
	done
	chown "$RUN_AS:$RUN_AS" "$SECRETS"
	chmod 0500 "$SECRETS"
}

# The blocks that replace the "#@render NAME" lines (without indentation; the renderer indents
# them like the marker).
slack_block() {
	cat <<-EOF
		slack_configs:
		  - api_url_file: $SECRETS/slack_webhook_url
		    send_resolved: true
	EOF
	[ -n "$SLACK_CHANNEL" ] && printf '    channel: %s\n' "$(quote "$SLACK_CHANNEL")"
	cat <<-'EOF'
		    title: '{{ template "hastack.title" . }}'
		    title_link: '{{ template "hastack.alertmanagerURL" . }}'
		    text: '{{ template "slack.hastack.text" . }}'
		    color: '{{ template "hastack.color" . }}'
	EOF
}

email_block() {
	cat <<-EOF
		email_configs:
		  - to: $(quote "$EMAIL_TO")
		    from: $(quote "$EMAIL_FROM")
		    smarthost: $(quote "$SMARTHOST")
		    require_tls: $REQUIRE_TLS
		    send_resolved: true
	EOF
	[ -n "$SMTP_USERNAME" ] && printf '    auth_username: %s\n' "$(quote "$SMTP_USERNAME")"
	secret_file smtp_password && printf '    auth_password_file: %s\n' "$SECRETS/smtp_password"
	cat <<-'EOF'
		    headers:
		      Subject: '{{ template "email.hastack.subject" . }}'
		    text: '{{ template "email.hastack.text" . }}'
		    html: '{{ template "email.hastack.html" . }}'
	EOF
}

watchdog_block() {
	cat <<-EOF
		webhook_configs:
		  - url_file: $SECRETS/watchdog_url
		    send_resolved: false
	EOF
}

# render: the configuration on stdout.
render() {
	local blocks
	blocks=$(mktemp -d)
	touch "$blocks/slack" "$blocks/email" "$blocks/watchdog"
	$SLACK_ON && slack_block >"$blocks/slack"
	$EMAIL_ON && email_block >"$blocks/email"
	$WATCHDOG_ON && watchdog_block >"$blocks/watchdog"
	awk -v dir="$blocks" '
		/^[[:space:]]*#@render [a-z]+[[:space:]]*$/ {
			indent = $0; sub(/#.*/, "", indent)
			name = $2
			while ((getline line < (dir "/" name)) > 0) print indent line
			close(dir "/" name)
			next
		}
		/#@env [A-Z_]+[[:space:]]*$/ {
			var = $0; sub(/.*#@env /, "", var); sub(/[[:space:]]*$/, "", var)
			if (ENVIRON[var] != "") {
				match($0, /^[[:space:]]*[a-z_]+:[[:space:]]*/)
				print substr($0, 1, RLENGTH) ENVIRON[var] "  #@env " var
				next
			}
		}
		{ print }
	' "$TEMPLATE"
	rm -rf "$blocks"
}

configure() {
	local v
	for v in ALERTMANAGER_GROUP_WAIT ALERTMANAGER_GROUP_INTERVAL ALERTMANAGER_REPEAT_INTERVAL ALERTMANAGER_WATCHDOG_INTERVAL; do
		if [ -n "${!v:-}" ] && ! duration_ok "${!v}"; then
			die "$v=${!v}: want a duration such as 30s, 5m or 4h"
		fi
	done

	SLACK_CHANNEL=$(setting ALERT_SLACK_CHANNEL slack_channel)
	EMAIL_TO=$(setting ALERT_EMAIL_TO email_to)
	EMAIL_FROM=$(setting ALERT_EMAIL_FROM email_from)
	SMARTHOST=$(setting ALERT_SMTP_SMARTHOST smtp_smarthost)
	SMTP_USERNAME=$(setting ALERT_SMTP_USERNAME smtp_username)
	REQUIRE_TLS=${ALERT_SMTP_REQUIRE_TLS:-true}
	case $REQUIRE_TLS in true | false) ;; *) die "ALERT_SMTP_REQUIRE_TLS=$REQUIRE_TLS: want true or false" ;; esac

	SLACK_ON=false EMAIL_ON=false WATCHDOG_ON=false
	if secret_file slack_webhook_url; then
		local url
		IFS= read -r url <"$SECRETS_IN/slack_webhook_url" || true
		case $url in
		https://* | http://*) SLACK_ON=true ;;
		*) die "secrets/alertmanager/slack_webhook_url does not hold a URL (it must start with https://)" ;;
		esac
	fi
	if [ -n "$EMAIL_TO" ]; then
		[ -n "$EMAIL_FROM" ] || die "ALERT_EMAIL_TO is set but ALERT_EMAIL_FROM is not: set the sender address"
		[[ $SMARTHOST =~ ^[^:[:space:]]+:[0-9]+$ || $SMARTHOST =~ ^\[[0-9a-fA-F:]+\]:[0-9]+$ ]] ||
			die "ALERT_SMTP_SMARTHOST='$SMARTHOST': want the SMTP server as host:port, e.g. smtp.example.com:587"
		if secret_file smtp_password && [ -z "$SMTP_USERNAME" ]; then
			die "secrets/alertmanager/smtp_password exists but ALERT_SMTP_USERNAME is not set: set the SMTP user"
		fi
		EMAIL_ON=true
	elif [ -n "$EMAIL_FROM$SMARTHOST" ]; then
		die "ALERT_EMAIL_FROM or ALERT_SMTP_SMARTHOST is set but ALERT_EMAIL_TO is not: set the recipient(s)"
	fi
	secret_file watchdog_url && WATCHDOG_ON=true

	local email=$EMAIL_ON
	$EMAIL_ON && email+=" (to $EMAIL_TO via $SMARTHOST)"
	log "receivers: slack=$SLACK_ON${SLACK_CHANNEL:+ (channel $SLACK_CHANNEL)} email=$email" \
		"watchdog=$WATCHDOG_ON; critical -> slack+email, warning -> slack, info -> UI only"
	$SLACK_ON || $EMAIL_ON || log "no receiver configured: alerts are shown in Alertmanager's UI only (docs/alerts.md says how to add one)"
}

# write_config: render into $RENDERED, readable by the alertmanager user and nobody else.
write_config() {
	local tmp
	tmp=$(mktemp "$RENDERED.XXXXXX" 2>/dev/null) ||
		die "cannot write $RENDERED: start the container as root (the default; Alertmanager itself runs as $RUN_AS) with a tmpfs on /run/alertmanager, or mount a configuration of your own read-only on $CONFIG"
	render >"$tmp"
	if [ "$(id -u)" = 0 ]; then
		chown "root:$RUN_AS" "$tmp"
	fi
	chmod 0640 "$tmp"
	mv -f "$tmp" "$RENDERED"
}

main() {
	if [ -e "$CONFIG" ] && [ ! -L "$CONFIG" ]; then
		# A configuration of the user's own, mounted read-only: used as it is.
		[ "${1:-}" = render ] && exec cat "$CONFIG"
		[ "${1:-}" = check ] && exec amtool check-config "$CONFIG"
		log "using $CONFIG as mounted (not rendered from $TEMPLATE)"
	else
		case ${1:-} in
		render)
			SECRETS=/run/alertmanager/secrets
			[ "$(id -u)" = 0 ] || SECRETS=$SECRETS_IN
			configure
			render
			return
			;;
		check)
			prepare_secrets
			configure
			write_config
			cat "$CONFIG"
			exec amtool check-config "$CONFIG"
			;;
		esac
		prepare_secrets
		configure
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
