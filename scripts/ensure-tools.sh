#!/usr/bin/env bash
# Checks the system tools geneva builds with; installs what apt-get can
# install when running as root, and otherwise says exactly what to run.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
missing=0

say() { printf 'geneva setup: %s\n' "$*" >&2; }

apt_install() {
  # $1 = tool that is missing, $2.. = Debian packages that provide it
  local tool="$1"; shift
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "'$tool' is missing: installing Debian package(s) $* with apt-get"
    if [ -z "${GENEVA_APT_UPDATED:-}" ]; then
      apt-get update -qq >&2
      export GENEVA_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
  elif command -v apt-get >/dev/null 2>&1; then
    say "'$tool' is missing: run  sudo apt-get update && sudo apt-get install -y $*  then re-run make"
    missing=1
  else
    say "'$tool' is missing: install it with your system's package manager (Debian/Ubuntu: $*), then re-run make"
    missing=1
  fi
}

# Rust: lance, datafusion and pyo3 need a current toolchain (edition 2024).
if ! command -v cargo >/dev/null 2>&1; then
  say "'cargo' is missing: install Rust 1.85 or newer with rustup (https://rustup.rs), then re-run make"
  missing=1
fi

# protoc: lance's build scripts compile .proto files.
command -v protoc >/dev/null 2>&1 || apt_install protoc protobuf-compiler

# The browser test drives Debian's chromium with its chromedriver (never a browser download).
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || apt_install chromium chromium chromium-driver

# Node.js and npm: Azurite, the Azure Storage emulator of the az:// upload tests.
command -v npm >/dev/null 2>&1 || apt_install npm nodejs npm

# A C compiler and linker for the -sys crates.
command -v cc >/dev/null 2>&1 || apt_install cc gcc libc6-dev

# Python >= 3.11 with venv and pip (geneva uses tomllib and datetime.UTC).
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  apt_install "$PYTHON" python3 python3-venv python3-pip
fi
if command -v "$PYTHON" >/dev/null 2>&1; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "$PYTHON is $("$PYTHON" -V 2>&1); geneva needs Python 3.11 or newer: set PYTHON=/path/to/python3.x and re-run make"
    missing=1
  elif ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install "python venv" python3-venv
  fi
fi

# protoc and cc may have just been installed: check once more.
for tool in protoc cc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "'$tool' is still missing after the steps above"
    missing=1
  fi
done

exit "$missing"
