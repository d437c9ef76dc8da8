#!/usr/bin/env bash
# The README's five-line demo against a running tagguard-registry, with each
# outcome checked: a push, a policy that makes the tag immutable retroactively,
# a refused overwrite, and the records with their performer.
# Usage: examples/registry/demo.sh [REGISTRY_ADDRESS]   (default 127.0.0.1:5000)
set -euo pipefail
R="${1:-127.0.0.1:5000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

umoci init --layout img && umoci new --image img:v1 && umoci config --image img:v1 --tag v2 --config.label version=2
skopeo copy --dest-tls-verify=false --dest-creds alice:alice-secret oci:img:v1 "docker://$R/org/app:v1.0.0"
curl -fsS -u alice:alice-secret -X POST -H 'Content-Type: application/json' -d '{"tagPattern":"v1\\..*"}' "http://$R/api/v1/organization/org/immutabilitypolicy/"
echo
if skopeo copy --dest-tls-verify=false --dest-creds alice:alice-secret oci:img:v2 "docker://$R/org/app:v1.0.0" 2>err.txt; then
  echo "demo failed: the overwrite of an immutable tag was accepted" >&2
  exit 1
fi
grep -q "tag is immutable and cannot be overwritten" err.txt || { cat err.txt >&2; echo "demo failed: the refusal does not say why" >&2; exit 1; }
echo "refused as expected: $(grep -o 'tag is immutable and cannot be overwritten' err.txt)"
curl -fsS -u alice:alice-secret "http://$R/api/v1/repository/org/app/logs" > logs.json
for kind in tag_made_immutable_by_policy tag_immutability_denied; do
  grep -q "\"kind\":\"$kind\"" logs.json || { echo "demo failed: no $kind record" >&2; exit 1; }
done
grep -q '"name":"alice"' logs.json || { echo "demo failed: the records do not name alice" >&2; exit 1; }
curl -fsS -u alice:alice-secret "http://$R/api/v1/tagguard/verify" | tee verify.json
echo
grep -q '"verified":true' verify.json || { echo "demo failed: the audit log does not verify" >&2; exit 1; }
echo "demo passed: the tag was made immutable with its record, and the overwrite was refused and recorded"
