#!/usr/bin/env bash
# Runs every named benchmark; each prints its figures as one JSON line at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
accord="${ACCORD:-.venv/bin/accord}"
for name in synth ingest quality federated-count task-overhead glm; do
  "$accord" bench "$name"
done
