#!/usr/bin/env bash
# The main job on the embedded default: set up, then replay the shipped Xiamen cassettes,
# day 1 then day 2, into a fresh SQLite database (data/demo), printing what each day found.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export CREDITWATCH_DATA_DIR=data/demo
rm -rf "$CREDITWATCH_DATA_DIR"
for day in 1 2; do
  echo "== day $day =="
  .venv/bin/creditwatch crawl xmtravel --replay "fixtures/xmtravel/xmtravel-day$day.yaml" --delist-after 1
done
echo
echo "Database: $CREDITWATCH_DATA_DIR/creditwatch.sqlite — try:"
echo "  CREDITWATCH_DATA_DIR=$CREDITWATCH_DATA_DIR .venv/bin/creditwatch changes"
