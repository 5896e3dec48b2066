#!/usr/bin/env bash
# The main job on the embedded default: set up, then replay the shipped cassettes of each
# source, day 1 then day 2, into a fresh SQLite database (data/demo), printing what each
# day found, then deliver the alerts of two demo subscriptions to Atom files, print the
# Xiamen diff between the two days and write a Parquet snapshot of every list.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --browser   # Chromium too: two city portals replay in a browser
export CREDITWATCH_DATA_DIR=data/demo
rm -rf "$CREDITWATCH_DATA_DIR"
# Two watchdog subscriptions whose alerts go to Atom files in data/demo (no network needed).
.venv/bin/creditwatch watch import fixtures/demo-subscriptions.yml
# Every source with two days of cassettes, national then city and provincial (Credit China
# needs a watchlist: docs/sources.md). The creditsearch platform computes its token in the
# site's JavaScript, so its portals replay in Chromium: skipped, saying so, without one.
national="xmtravel mct_tourism caac mohrss ccgp gsxt"
cities="beijing_punish beijing_allow beijing_blacklist beijing_redlist shanghai_doublepublic
  shanghai_license shenzhen_punish shenzhen_license tianjin_xygs xinjiang_xygs hainan_xygs
  guangdong_tqnmggz guangdong_redlist"
in_browser="shandong_blacklist shaanxi_redlist"
if .venv/bin/python - <<'PY'
import os, sys
from crawlers.browser import chromium_executable
if not chromium_executable():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        bundled = playwright.chromium.executable_path
    sys.exit(0 if bundled and os.path.exists(bundled) else 1)
PY
then
  cities="$cities $in_browser"
else
  echo "(no Chromium: skipping $in_browser; ./scripts/setup.sh --browser installs it)"
fi
# Two sources at a time (SQLite takes one writer at a time and each waits its turn, as under
# the daemon); each source's two days in order, its output printed whole once all are done.
logs="$CREDITWATCH_DATA_DIR/demo-logs"
mkdir -p "$logs"
replay_two_days() {
  for day in 1 2; do
    echo "== $1 day $day =="
    .venv/bin/creditwatch crawl "$1" --replay "fixtures/$1/$1-day$day.yaml" --delist-after 1
  done > "$logs/$1.txt" 2>&1
}
export -f replay_two_days
export logs
replayed=0
printf '%s\n' $national $cities | xargs -P 2 -I{} bash -c 'replay_two_days "$1"' _ {} || replayed=$?
for source in $national $cities; do cat "$logs/$source.txt"; done
if [ "$replayed" -ne 0 ]; then echo "demo: a replay failed (see above)" >&2; exit 1; fi
echo
echo "== alerts =="
.venv/bin/creditwatch alerts send
.venv/bin/creditwatch alerts log
echo
echo "== diff: the Xiamen lists between the two replayed days =="
.venv/bin/creditwatch diff xmtravel --from 2025-11-21 --to 2025-11-22
echo
echo "== snapshot (Parquet, as of the newest healthy runs) =="
.venv/bin/creditwatch snapshot all --format parquet --out "$CREDITWATCH_DATA_DIR/snapshots/latest"
echo
echo "Database: $CREDITWATCH_DATA_DIR/creditwatch.sqlite — try:"
echo "  .venv/bin/creditwatch --data-dir $CREDITWATCH_DATA_DIR changes"
echo "  .venv/bin/creditwatch --data-dir $CREDITWATCH_DATA_DIR serve    # then http://127.0.0.1:8000"
