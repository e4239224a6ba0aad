#!/usr/bin/env bash
# The wheel the image installs, checked as a user gets it: built from this tree, installed
# with its dependencies into a fresh venv (pinned by constraints.txt when there is one, else
# by what .venv holds), and every entrypoint run from outside the source tree, where only
# the installed package (and its packaged deploy/, services/_deploy) can be found.
#   scripts/check_wheel.sh            (CI: .ci/run; about 20 s, dependencies from pip's index)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PY:-.venv/bin/python}
work=$(mktemp -d)
had_build=$([ -e build ] && echo yes || echo no)
cleanup() {
  rm -rf "$work"
  if [ "$had_build" = no ]; then rm -rf "$REPO/build"; fi
}
trap cleanup EXIT

# The venv's setuptools builds it (no isolated build env to download).
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/dist" .
wheel=$(ls "$work"/dist/kruise_mesh-*.whl)
echo "built $(basename "$wheel")"

if [ -f constraints.txt ]; then
  constraints=$PWD/constraints.txt
else
  constraints=$work/constraints.txt
  "$PY" -m pip freeze --exclude-editable | grep -v -i '^kruise-mesh' >"$constraints"
fi
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" "$wheel"

cd "$work"  # no checkout on sys.path from here on
for module in services.gateway services.placement services.rollout services.budget \
  services.cli sandbox; do
  "$work/venv/bin/python" -m "$module" --help >/dev/null
  echo "ok: python -m $module --help"
done
"$work/venv/bin/kruise-mesh" --help >/dev/null
echo "ok: kruise-mesh --help"
"$work/venv/bin/python" - <<'PY'
import sysconfig
from pathlib import Path

from services.deploy_files import deploy_dir, deploy_path

site = Path(sysconfig.get_paths()["purelib"]).resolve()
assert deploy_dir().resolve().is_relative_to(site), f"deploy/ outside the install: {deploy_dir()}"
assert deploy_path("webhooks.yaml").is_file(), "webhooks.yaml not packaged"
crds = sorted(p.name for p in deploy_path("crds").glob("*.yaml"))
assert len(crds) >= 3, f"CRDs not packaged: {crds}"
assert list(deploy_path("examples").glob("*.yaml")), "examples not packaged"
print(f"ok: deploy/ packaged ({len(crds)} CRDs, webhooks.yaml, examples)")

from sandbox import openapi

documents = sorted(openapi.DATA.glob("*"))
assert openapi.DATA.resolve().is_relative_to(site) and documents, "sandbox OpenAPI not packaged"
print(f"ok: the sandbox's OpenAPI documents packaged ({len(documents)} files)")
PY
