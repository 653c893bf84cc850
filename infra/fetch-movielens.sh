#!/usr/bin/env bash
# MovieLens-100K as shipped inside RecBole's package on PyPI (its dataset_example folder). The data is read from the
# wheel at run time and never committed: MovieLens' terms forbid redistribution.
# Prints the path of the extracted ml-100k.inter file.
set -euo pipefail
. "$(dirname "$0")/env.sh"

out="$RECSYS_CACHE/data/ml-100k"
if [[ ! -s "$out/ml-100k.inter" ]]; then
  wheels="$RECSYS_CACHE/downloads"
  mkdir -p "$wheels" "$out"
  wheel=$(ls "$wheels"/recbole-"$RECBOLE_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [[ -z "$wheel" ]]; then
    log "fetching recbole==$RECBOLE_VERSION (for the MovieLens-100K files inside it)"
    "$RECSYS_VENV/bin/pip" download --quiet --no-deps --only-binary=:all: -d "$wheels" "recbole==$RECBOLE_VERSION"
    wheel=$(ls "$wheels"/recbole-"$RECBOLE_VERSION"-*.whl | head -n 1)
  fi
  "$RECSYS_PYTHON" - "$wheel" "$out" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("ml-100k.inter", "ml-100k.item", "ml-100k.user"):
        data = z.read(f"recbole/dataset_example/ml-100k/{name}")
        tmp = os.path.join(out, name + ".partial")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(out, name))
PY
fi
echo "$out/ml-100k.inter"
