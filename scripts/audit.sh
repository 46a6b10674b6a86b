#!/usr/bin/env bash
# `make audit`: known vulnerabilities in the pinned dependencies (requirements.lock), with pip-audit
# against PyPI's advisory data. Not part of `make test`: it needs the network, and is skipped (exit 0,
# with a message) where PyPI cannot be reached. pip-audit lives in its own venv under build/ so that
# its dependencies never touch the project's pins.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_AUDIT_VERSION=2.10.1
PY=${PYTHON:-python3}
if ! "$PY" - <<'PYEOF'
import sys, urllib.request
try:
    urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=15).read(1)
except Exception as e:
    print(f"audit: PyPI is not reachable ({e}); skipped", file=sys.stderr)
    sys.exit(1)
PYEOF
then
  exit 0
fi
venv=build/audit-venv
if [ ! -x "$venv/bin/pip-audit" ] || ! "$venv/bin/pip-audit" --version | grep -q "$PIP_AUDIT_VERSION"; then
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "pip-audit==$PIP_AUDIT_VERSION" 2>&1 | grep -v "is ignored" || true
fi
# every line of the lock is pinned (==), so no resolution is needed: --no-deps --disable-pip
report=build/audit.json
set +e
"$venv/bin/pip-audit" --requirement requirements.lock --no-deps --disable-pip --vulnerability-service pypi \
  --progress-spinner off --format json --output "$report" "$@" 2>build/audit.log
rc=$?
set -e
[ -s "$report" ] || { cat build/audit.log >&2; echo "audit: pip-audit failed (exit $rc)" >&2; exit "$rc"; }
"$PY" - "$report" <<'PYEOF'
import json, sys
deps = json.load(open(sys.argv[1]))["dependencies"]
skipped = [d for d in deps if d.get("skip_reason")]
vulnerable = [d for d in deps if d.get("vulns")]
for d in vulnerable:
    for v in d["vulns"]:
        fix = ", ".join(v.get("fix_versions") or []) or "no fix yet"
        print(f"{d['name']}=={d['version']}: {v['id']} (fixed in {fix})")
audited = len(deps) - len(skipped)
if audited == 0:
    print(f"audit: PyPI's advisory data is not reachable from here: none of the {len(deps)} pinned "
          "packages could be audited; nothing was checked (run `make audit` where pypi.org answers)")
    sys.exit(0)
print(f"audit: {audited} of {len(deps)} pinned packages audited, {len(skipped)} skipped, "
      f"{sum(len(d['vulns']) for d in vulnerable)} known vulnerabilities in {len(vulnerable)} packages")
for d in skipped:
    print(f"  skipped {d['name']}: {d['skip_reason']}")
sys.exit(1 if vulnerable else 0)
PYEOF
