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
for source in $national $cities; do
  for day in 1 2; do
    echo "== $source day $day =="
    .venv/bin/creditwatch crawl "$source" --replay "fixtures/$source/$source-day$day.yaml" --delist-after 1
  done
done
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
