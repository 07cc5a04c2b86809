#!/usr/bin/env bash
# The Python library's checks: mypy --strict, pytest (frozen vectors read from
# packages/core/vectors), and packaging (sdist + wheel built without network, installed into a
# fresh virtual environment, smoke-imported there). Needs Debian's python3 with python3-nacl,
# python3-paho-mqtt, python3-pytest, python3-build, python3-setuptools, python3-venv, mypy.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-/usr/bin/python3}"
cd "$here"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PYTHONDONTWRITEBYTECODE=1

echo "== mypy --strict"
"$python" -m mypy --strict --cache-dir "$work/mypy-cache" src interop bench
# the smart-home example's Python service (examples/smart-home/python), against this library
MYPYPATH=src "$python" -m mypy --strict --cache-dir "$work/mypy-cache" ../examples/smart-home/python/automation.py

echo "== benchmark smoke (Python half of bench/compare.sh, a few calls)"
"$python" bench/compare.py --python-only --passes 1 --count 20 >/dev/null

echo "== pytest"
"$python" -m pytest -q -p no:cacheprovider tests

echo "== build (sdist + wheel) and install into a fresh venv"
# Build from a copy so the working tree gets no build/ or *.egg-info.
mkdir "$work/src-copy"
cp -r pyproject.toml README.md src "$work/src-copy/"
"$python" -m build --no-isolation --outdir "$work/dist" "$work/src-copy" >"$work/build.log" 2>&1 || {
  cat "$work/build.log"
  exit 1
}
ls "$work/dist"/smqtt-*.tar.gz "$work/dist"/smqtt-*-py3-none-any.whl >/dev/null
"$python" -m venv --system-site-packages "$work/venv"
for kind in whl tar.gz; do
  # PyNaCl and paho-mqtt come from Debian (system site packages); nothing from the network.
  "$work/venv/bin/python" -m pip install --no-index --no-deps --no-build-isolation --quiet \
    --disable-pip-version-check --force-reinstall "$work/dist"/smqtt-*."$kind"
  (cd "$work" && "$work/venv/bin/python" -c '
import smqtt, smqtt.envelope, importlib.resources as r
assert smqtt.__file__.startswith("'"$work"'/venv"), smqtt.__file__
assert r.files("smqtt").joinpath("py.typed").is_file()
assert "ERR_REPLAY" in smqtt.ERROR_CODES
print("smoke import ok:", smqtt.__version__)
')
  "$work/venv/bin/python" -m pip uninstall --yes --quiet smqtt
done
echo "python/ci.sh: all passed"
