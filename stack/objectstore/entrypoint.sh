#!/bin/bash
# Starts versitygw over /data with the credentials from the secret files (never on the command
# line, which every process can read), after creating the bucket (a directory of /data).
set -euo pipefail
secret_dir=${OBJECTSTORE_SECRETS:-/run/secrets}
ROOT_ACCESS_KEY_ID=${OBJECTSTORE_USER:-hastack}
ROOT_SECRET_ACCESS_KEY=$(cat "$secret_dir/secret_key")
export ROOT_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY
bucket=${OBJECTSTORE_BUCKET:-backups}
mkdir -p "/data/$bucket"
echo "objectstore: serving bucket $bucket on :7070 (access key $ROOT_ACCESS_KEY_ID)" >&2
exec versitygw --port :7070 --health /health --region "${OBJECTSTORE_REGION:-us-east-1}" posix /data
