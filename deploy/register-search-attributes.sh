#!/usr/bin/env bash
# Register paysaga's custom search attributes (the registry in contracts/search_attributes.py) on a namespace.
# Run from a checkout (it reads the registry, so the list never drifts from the code).
# Usage: TEMPORAL_ADDRESS=host:7233 deploy/register-search-attributes.sh [namespace]
set -euo pipefail
ns="${1:-default}"
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
"$python" -c 'from contracts import search_attributes as sa
for key in sa.ALL: print(key.name, sa.cli_type(key))' | while read -r name type; do
  temporal operator search-attribute create --namespace "$ns" --name "$name" --type "$type" \
    --address "${TEMPORAL_ADDRESS:-localhost:7233}" || echo "($name may already exist)"
done
