#!/usr/bin/env bash
# Build a demo database from ../shared/imagesets with the stand-in embedder, then serve it.
#
#   bash demo/demo.sh                 # build demo/out/demo.db (if missing) and serve on 127.0.0.1:8001
#   bash demo/demo.sh --rebuild       # start again from scratch
#   PORT=9000 bash demo/demo.sh
#   SHARED=/path/to/shared bash demo/demo.sh
#
# Images: the tuxpaint stamps (353 labelled images), their 125 modified copies (so the
# near-duplicate panels have something to show) and 500 handwritten digits. The model is
# the EfficientNet-Lite0 stand-in (no text tower, so text search shows its note); point
# MODEL at a CLIP directory in the Hugging Face ONNX layout to get text search too.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
SHARED="${SHARED:-$here/../../shared}"
MODEL="${MODEL:-$SHARED/models/efficientnet-lite0}"
DB="${DB:-$here/out/demo.db}"
PORT="${PORT:-8001}"
IMAGECLUST="${IMAGECLUST:-imageclust}"
DATASETTE="${DATASETTE:-datasette}"

if [ ! -d "$SHARED/imagesets" ]; then
  echo "no $SHARED/imagesets: set SHARED=/path/to/shared" >&2
  exit 1
fi
if [ "${1:-}" = "--rebuild" ]; then
  rm -f "$DB" "$DB-wal" "$DB-shm"
  shift
fi
mkdir -p "$(dirname "$DB")"
if [ ! -f "$DB" ]; then
  echo "building $DB ..." >&2
  "$IMAGECLUST" load "$DB" "$SHARED/imagesets/tuxpaint-stamps" "$SHARED/imagesets/tuxpaint-stamps-dupes" \
      "$SHARED/imagesets/sklearn-digits" --model "$MODEL"
  # load builds the similarity index; the default run's `cluster` lays out the map.
  "$IMAGECLUST" cluster "$DB" --name ward --labels terms
  "$IMAGECLUST" cluster "$DB" --name kmeans24 --method kmeans --clusters 24 --labels terms --no-default --no-duplicates
  "$IMAGECLUST" info "$DB" >&2
fi
if [ "${NO_SERVE:-}" = "1" ]; then
  exit 0
fi
# Original files are served only from under this root (see the README's Security notes).
conf="$(dirname "$DB")/demo-config.json"
cat > "$conf" <<JSON
{"plugins": {"datasette-imageclust": {"originals_root": "$(cd "$SHARED/imagesets" && pwd)"}}}
JSON
# Plugin settings live in metadata on Datasette 0.65, in config (-c) on 1.0.
case "$("$DATASETTE" --version)" in
  *" 0."*) flag=-m ;;
  *) flag=-c ;;
esac
echo "serving http://127.0.0.1:$PORT/$(basename "$DB" .db)/-/imageclust" >&2
exec "$DATASETTE" -i "$DB" -h 127.0.0.1 -p "$PORT" "$flag" "$conf" "$@"
