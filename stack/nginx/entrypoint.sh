#!/bin/bash
# nginx entrypoint:
#  - TLS: use the user's nginx/ssl/nginx.{crt,key} (mounted at /etc/nginx/ssl) if present, else a
#    self-signed certificate generated on first start into the nginx_tls volume, with SANs for
#    localhost, 127.0.0.1 and $TLS_HOSTNAMES (comma-separated names or IPs). It is regenerated when
#    TLS_HOSTNAMES changes.
#  - Backends: write the upstream from the current addresses of $WEB_BACKENDS and, in the
#    background, rewrite it and reload nginx gracefully whenever an address changes (a backend
#    stopped, started or recreated). Open-source nginx 1.26 resolves upstream names only at start.
set -euo pipefail

WEB_BACKENDS=${WEB_BACKENDS:-web1 web2}
BACKEND_PORT=${BACKEND_PORT:-80}
HTTPS_PORT=${HTTPS_PUBLIC_PORT:-443}
GEN=/etc/nginx/generated
log() { printf '%s entrypoint: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

setup_tls() {
	if [ -s /etc/nginx/ssl/nginx.crt ] && [ -s /etc/nginx/ssl/nginx.key ]; then
		ln -sf /etc/nginx/ssl/nginx.crt /etc/nginx/tls/nginx.crt
		ln -sf /etc/nginx/ssl/nginx.key /etc/nginx/tls/nginx.key
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
	ln -sf "$dir/nginx.crt" /etc/nginx/tls/nginx.crt
	ln -sf "$dir/nginx.key" /etc/nginx/tls/nginx.key
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

# upstream_conf prints the upstream's server lines for the backends that resolve now. A backend
# that fails is left out of the rotation for 2 s (fail_timeout): short, because a backend that
# was just started may refuse the first connection before Apache listens.
upstream_conf() {
	local b addr found=0
	for b in $WEB_BACKENDS; do
		addr=$(getent hosts "$b" | awk 'NR==1 {print $1}') || true
		if [ -n "$addr" ]; then
			echo "server $addr:$BACKEND_PORT max_fails=1 fail_timeout=2s; # $b"
			found=1
		else
			echo "# $b: not resolvable (stopped or not created)"
		fi
	done
	# nginx needs at least one server; with none resolvable requests get 502 until one returns.
	[ $found = 1 ] || echo "server 127.0.0.1:9 down;"
}

watch_backends() {
	local next
	while sleep 1; do
		next=$(upstream_conf)
		if [ "$next" != "$(cat "$GEN/upstream.conf")" ]; then
			echo "$next" >"$GEN/upstream.conf"
			log "backends changed: $(grep -o '# .*' <<<"$next" | tr '\n' ' '); reloading"
			nginx -s reload || log "reload failed"
		fi
	done
}

setup_tls
setup_redirect
upstream_conf >"$GEN/upstream.conf"
nginx -t -q
watch_backends &
exec nginx -g 'daemon off;'
