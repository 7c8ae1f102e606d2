#!/bin/bash
# nginx entrypoint:
#  - TLS: use the user's nginx/ssl/nginx.{crt,key} (mounted at /etc/nginx/ssl) if present, else a
#    self-signed certificate generated on first start into the nginx_tls volume, with SANs for
#    localhost, 127.0.0.1 and $TLS_HOSTNAMES (comma-separated names or IPs). It is regenerated when
#    TLS_HOSTNAMES changes. Started as root (the image's default), it copies the pair into
#    /etc/nginx/tls (memory) for www-data and runs everything after that as www-data: the key may
#    be root's own, mode 0600, as the seed's openssl command makes it.
#  - Configuration: nginx/conf, mounted at /etc/nginx/hastack (the image's nginx.conf includes
#    it). `entrypoint.sh test` checks it and `entrypoint.sh reload` applies it in place.
#  - Backends: $WEB_BACKENDS lists them as NAME=ADDRESS (fixed addresses on the front network, so
#    nginx never needs a reload when a backend stops, returns or is recreated). For them it writes
#    one upstream group with every backend and one without each, and the per-request choice
#    between them by lb-health's marker files in $LB_STATE ("NAME.down": out of rotation).
set -euo pipefail

WEB_BACKENDS=${WEB_BACKENDS:?WEB_BACKENDS must list the backends as NAME=ADDRESS}
LB_STATE=${LB_STATE:-/var/lib/hastack-lb}
BACKEND_PORT=${BACKEND_PORT:-80}
HTTPS_PORT=${HTTPS_PUBLIC_PORT:-443}
GEN=/etc/nginx/generated
TLS=/etc/nginx/tls
RUN_AS=www-data
log() { printf '%s entrypoint: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# as_nginx CMD...: CMD as the user nginx runs as (as is, when that is who we are already).
as_nginx() {
	if [ "$(id -u)" = 0 ]; then
		setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups -- "$@"
	else
		"$@"
	fi
}

# copy_for_nginx SRC DST: SRC's content in DST (mode 0600), written by nginx's own user.
copy_for_nginx() {
	# shellcheck disable=SC2016 # the inner script's own $1
	as_nginx sh -c 'umask 077 && cat >"$1.tmp" && mv -f "$1.tmp" "$1"' sh "$2" <"$1"
}

# install_pair CRT KEY: the pair nginx loads.
install_pair() {
	if [ ! -r "$1" ] || [ ! -r "$2" ]; then
		die "cannot read $1 and $2: start the container as root (the image's default) or make them readable by $RUN_AS"
	fi
	copy_for_nginx "$1" "$TLS/nginx.crt"
	copy_for_nginx "$2" "$TLS/nginx.key"
}

setup_tls() {
	if [ -s /etc/nginx/ssl/nginx.crt ] && [ -s /etc/nginx/ssl/nginx.key ]; then
		install_pair /etc/nginx/ssl/nginx.crt /etc/nginx/ssl/nginx.key
		log "TLS: using the certificate in nginx/ssl/"
		return
	fi
	local dir=/var/lib/nginx-tls san="DNS:localhost,IP:127.0.0.1"
	local name
	IFS=',' read -ra names <<<"${TLS_HOSTNAMES:-}"
	for name in "${names[@]}"; do
		name=$(echo "$name" | tr -d ' ')
		[ -n "$name" ] || continue
		if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
	done
	if [ ! -s "$dir/nginx.crt" ] || [ "$(cat "$dir/san" 2>/dev/null)" != "$san" ]; then
		log "TLS: no certificate in nginx/ssl/; generating a self-signed one for $san"
		(umask 077 && openssl req -x509 -nodes -days 365 -newkey rsa:2048 -sha256 \
			-subj "/CN=${names[0]:-localhost}" -addext "subjectAltName=$san" \
			-keyout "$dir/nginx.key" -out "$dir/nginx.crt" 2>/dev/null)
		echo "$san" >"$dir/san"
	fi
	install_pair "$dir/nginx.crt" "$dir/nginx.key"
}

setup_redirect() {
	if [ "$HTTPS_PORT" = 443 ]; then
		# $host and $request_uri are nginx's variables, written as they are.
		# shellcheck disable=SC2016
		echo 'return 301 https://$host$request_uri;' >"$GEN/redirect.conf"
	else
		echo "return 301 https://\$host:$HTTPS_PORT\$request_uri;" >"$GEN/redirect.conf"
	fi
}

# server_line NAME ADDRESS [backup]: one backend in an upstream group. nginx's own passive
# accounting is off (max_fails=0): lb-health's probes decide who is in rotation. With it on, a
# backend slow for a moment under load (a timeout) was taken out, and with both out nginx
# answered 502 at once for 2 s (measured); a failed request is still retried once on the other.
server_line() { echo "    server $2:$BACKEND_PORT max_fails=0${3:+ $3}; # $1"; }

# group NAME [OUT]: an upstream group of every backend, OUT (out of rotation) as a backup: it
# gets no request, but one that failed on every backend in rotation is retried on it. So the
# markers choose where requests go, and a marker that is wrong costs a retry, not an error
# (measured: lb-health took web2 out, slow under load, as web1 stopped: with web1 alone in the
# group, 546 requests failed in one second).
group() {
	local b
	echo "upstream $1 {"
	echo "    zone $1 64k;"
	for b in $WEB_BACKENDS; do
		[ "${b%%=*}" = "${2:-}" ] || server_line "${b%%=*}" "${b#*=}"
	done
	[ -z "${2:-}" ] || for b in $WEB_BACKENDS; do
		[ "${b%%=*}" != "$2" ] || server_line "${b%%=*}" "${b#*=}" backup
	done
	# Kept-alive connections to the backends, given up after 4 s (Apache closes its idle ones
	# after 5 s: nginx never sends on a connection Apache is closing).
	echo "    keepalive 32;"
	echo "    keepalive_timeout 4s;"
	echo "}"
}

# write_backends: generated/upstreams.conf (http level) and generated/pool.conf (server level,
# sets $web_pool, the group a request goes to, and $web_reduced, set when a backend is out).
write_backends() {
	local b name
	for b in $WEB_BACKENDS; do
		name=${b%%=*}
		[[ $b == *=* && $name =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ && ${b#*=} =~ ^[0-9.]+$ ]] ||
			die "WEB_BACKENDS: '$b': want NAME=IPV4ADDRESS (e.g. web1=10.231.80.11), a fixed address of the backend"
	done
	{
		echo "# Written by the entrypoint from WEB_BACKENDS=\"$WEB_BACKENDS\"."
		group web_all
		for b in $WEB_BACKENDS; do group "web_without_${b%%=*}" "${b%%=*}"; done
	} >"$GEN/upstreams.conf"
	{
		echo "# Written by the entrypoint: lb-health's markers choose the group, at every request."
		echo "set \$web_pool web_all;"
		echo "set \$web_reduced \"\";"
		for b in $WEB_BACKENDS; do
			echo "if (-f $LB_STATE/${b%%=*}.down) { set \$web_pool web_without_${b%%=*}; set \$web_reduced 1; }"
		done
	} >"$GEN/pool.conf"
	log "backends: $WEB_BACKENDS"
}

# `entrypoint.sh test` and `entrypoint.sh reload`, run in the running container (the agent's
# docker exec, the labels in docker-compose.yml): check the configuration as it is mounted now,
# and apply it (the certificate read again, nginx -t, a graceful reload of the workers).
# open_output lets nginx's user open our output: nginx opens its logs, /dev/stdout and
# /dev/stderr, by name, and the pipes are root's.
open_output() {
	if [ "$(id -u)" = 0 ]; then
		chmod o+w /proc/self/fd/1 /proc/self/fd/2 || log "cannot open the output to $RUN_AS: nginx's logs may fail"
	fi
}

case "${1:-}" in
test)
	open_output
	as_nginx nginx -t -q
	exit
	;;
reload)
	open_output
	setup_tls
	as_nginx nginx -t -q
	# Drain first: for NGINX_RELOAD_DRAIN seconds every answer says "Connection: close"
	# (nginx.conf), so that clients leave their kept-alive connections before the old workers
	# close the idle ones, which would lose a request sent on one at that instant.
	trap 'as_nginx rm -f /run/nginx-drain' EXIT
	as_nginx touch /run/nginx-drain
	sleep "${NGINX_RELOAD_DRAIN:-1}"
	as_nginx nginx -s reload
	sleep 1
	log "reloaded"
	exit
	;;
esac

if [ "${1:-}" != --unprivileged ]; then
	setup_tls
	if [ "$(id -u)" = 0 ]; then
		open_output
		# From here on, and nginx itself: www-data, with no capability left.
		exec setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups -- "$0" --unprivileged
	fi
fi
setup_redirect
write_backends
nginx -t -q
exec nginx -g 'daemon off;'
