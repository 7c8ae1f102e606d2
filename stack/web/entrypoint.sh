#!/bin/sh
# Run Apache in the foreground as PID 1 so that docker stop's SIGWINCH reaches it directly.
set -e
# shellcheck source=/dev/null # Debian's apache2 package provides it in the image
. /etc/apache2/envvars
mkdir -p "$APACHE_RUN_DIR" "$APACHE_LOCK_DIR" "$APACHE_LOG_DIR"
exec apache2 -D FOREGROUND
