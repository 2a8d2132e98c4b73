#!/bin/sh
# First start of a gateway data folder: unless DATA/service.toml exists, write it with one admin
# token for scripts (the token itself goes to DATA/admin-token.txt, mode 0600; service.toml
# keeps only its SHA-256) and, when given, the destinations file and the default destination;
# and make an `admin` account for the staff page (its password in DATA/admin-password.txt,
# 0600; the job store keeps an argon2 hash). An existing service.toml is never touched, so this
# is safe on every start (compose runs it as `setup`, the gateway unit as ExecStartPre).
#
#   first-run.sh DATA [DESTINATIONS_FILE DEFAULT_DESTINATION]
set -eu
data="${1:?usage: first-run.sh DATA [DESTINATIONS_FILE DEFAULT_DESTINATION]}"
vid2dcm="${VID2DCM_BIN:-$(dirname "$0")/../venv/bin/vid2dcm}"
[ -x "$vid2dcm" ] || vid2dcm=vid2dcm
mkdir -p "$data"
if [ -f "$data/service.toml" ]; then
  echo "first-run: $data/service.toml exists, left as it is"
  exit 0
fi
umask 077
# `vid2dcm token` prints the TOML table to paste on stdout and the token itself on stderr.
table="$("$vid2dcm" token --role admin --name first-run 2>"$data/.token.txt")"
tail -n 1 "$data/.token.txt" > "$data/admin-token.txt"
rm -f "$data/.token.txt"
{
  echo "[service]"
  if [ -n "${2:-}" ]; then
    echo "destinations_file = \"$2\""
    echo "default_destinations = [\"${3:?a default destination name is needed with a file}\"]"
  fi
  printf '%s\n' "$table"
} > "$data/service.toml.new"
chmod 0600 "$data/service.toml.new"
mv "$data/service.toml.new" "$data/service.toml"
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=\n')"
printf '%s\n' "$password" > "$data/admin-password.txt"
printf '%s\n' "$password" | "$vid2dcm" user add admin --role admin --data "$data" \
  --password-stdin >/dev/null
echo "first-run: wrote $data/service.toml; admin token in $data/admin-token.txt," \
  "staff page account admin with the password in $data/admin-password.txt"
