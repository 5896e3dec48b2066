#!/usr/bin/env bash
# Set up everything creditwatch needs, idempotently: a virtualenv with the project and its
# dev tools; with --browser also Debian's Chromium (Playwright cannot download its own
# browser here); with --postgres also a running local PostgreSQL for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
want_postgres=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    --postgres) want_postgres=1 ;;
    *) echo "usage: $0 [--browser] [--postgres]" >&2; exit 2 ;;
  esac
done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq || return 1; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/pip install -q -U pip
fi
.venv/bin/pip install -q -e '.[dev]'

if [ "$want_browser" = 1 ] && ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Debian's chromium for the Playwright tests"
  apt_install chromium || echo "setup: could not install chromium; browser tests will be skipped" >&2
fi

# Screenshots of Chinese pages (the web app's browser test) need a CJK font.
if [ "$want_browser" = 1 ] && command -v fc-list >/dev/null && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
  apt_install fonts-wqy-zenhei || echo "setup: no CJK font; screenshots will show boxes for Chinese" >&2
fi

if [ "$want_postgres" = 1 ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql || true
    if command -v pg_ctlcluster >/dev/null; then
      version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
      [ -n "$version" ] && as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "setup: PostgreSQL answers on 127.0.0.1:5432"
  else
    echo "setup: PostgreSQL does not answer; its tests will be skipped" >&2
  fi
fi
