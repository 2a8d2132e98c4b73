#!/usr/bin/env bash
# Installs vid2dcm on a server: a virtual environment under PREFIX, and optionally the runtime
# Debian packages, a system user, the data folder and the systemd units. The container image
# runs this same script (deploy/Dockerfile), so the image and a bare-metal install agree.
#
#   deploy/install.sh [--prefix /opt/vid2dcm] [--data /var/lib/vid2dcm] [--etc /etc/vid2dcm]
#                     [--system-deps] [--user vid2dcm] [--units /etc/systemd/system]
#                     [--source DIR] [--python python3]
#
# Re-running it upgrades in place (the venv is reused, the package reinstalled); settings in
# ETC and DATA are never overwritten. Exit codes: 0 done, 2 bad arguments, 3 a step failed.
set -euo pipefail

PREFIX=/opt/vid2dcm
DATA=/var/lib/vid2dcm
ETC=/etc/vid2dcm
UNITS=""
SYSTEM_DEPS=0
USER_NAME=""
PYTHON=python3
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# What the runtime needs from Debian (bookworm): dciodvfy validates every output
# (dicom3tools), DCMTK gives the operator echoscu/storescu/dcmdump to check a PACS link,
# ca-certificates lets TLS to a PACS or STOW-RS endpoint verify public CAs, and Tesseract with
# its English data finds burned-in text when de-identifying (pytesseract calls the program).
# FFmpeg is not here: it comes inside the PyAV wheel (OpenCV's inside its headless wheel).
# tests/test_deploy.py checks each name with apt-cache. A capture machine that records
# srt:// sources (`vid2dcm record`) also needs srt-tools (srt-live-transmit); the gateway and
# workers do not.
RUNTIME_PACKAGES=(dcmtk dicom3tools ca-certificates tesseract-ocr tesseract-ocr-eng)

fail() { echo "install.sh: $*" >&2; exit 3; }
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="${2:?}"; shift 2 ;;
    --data) DATA="${2:?}"; shift 2 ;;
    --etc) ETC="${2:?}"; shift 2 ;;
    --units) UNITS="${2:?}"; shift 2 ;;
    --user) USER_NAME="${2:?}"; shift 2 ;;
    --source) SOURCE="${2:?}"; shift 2 ;;
    --python) PYTHON="${2:?}"; shift 2 ;;
    --system-deps) SYSTEM_DEPS=1; shift ;;
    --print-packages) echo "${RUNTIME_PACKAGES[*]}"; exit 0 ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done

[ -f "$SOURCE/pyproject.toml" ] || fail "no pyproject.toml in $SOURCE (pass --source)"

if [ "$SYSTEM_DEPS" = 1 ]; then
  command -v apt-get >/dev/null 2>&1 || fail "--system-deps needs apt-get (Debian/Ubuntu)"
  packages=("${RUNTIME_PACKAGES[@]}")
  "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null || fail "apt-get install ${packages[*]} failed"
  rm -rf /var/lib/apt/lists/*
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "$PYTHON is older than Python 3.11"
[ -x "$PREFIX/venv/bin/python" ] || "$PYTHON" -m venv "$PREFIX/venv" \
  || fail "cannot create $PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check "$SOURCE" \
  || fail "pip install $SOURCE failed"
"$PREFIX/venv/bin/vid2dcm" --version >/dev/null || fail "the installed vid2dcm does not start"

if [ -n "$USER_NAME" ] && ! id -u "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir "$DATA" --no-create-home \
    --shell /usr/sbin/nologin "$USER_NAME" || fail "cannot create user $USER_NAME"
fi
mkdir -p "$DATA"
if [ -n "$USER_NAME" ]; then
  chown "$USER_NAME:$USER_NAME" "$DATA"
  chmod 0700 "$DATA"   # what the gateway itself sets: the service user only
fi

# Shipped with the install: the first-run script, units and monitoring files, for reference.
mkdir -p "$PREFIX/share"
cp "$SOURCE/deploy/first-run.sh" "$PREFIX/share/first-run.sh"
chmod 0755 "$PREFIX/share/first-run.sh"

if [ -n "$UNITS" ]; then
  mkdir -p "$UNITS" "$ETC"
  for unit in "$SOURCE"/deploy/systemd/*.service; do
    sed -e "s#/opt/vid2dcm#$PREFIX#g" -e "s#/var/lib/vid2dcm#$DATA#g" \
        -e "s#/etc/vid2dcm#$ETC#g" "$unit" > "$UNITS/$(basename "$unit")"
  done
  [ -f "$ETC/vid2dcm.env" ] || cp "$SOURCE/deploy/systemd/vid2dcm.env" "$ETC/vid2dcm.env"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
fi
echo "vid2dcm installed in $PREFIX ($("$PREFIX/venv/bin/vid2dcm" --version)); data in $DATA"
