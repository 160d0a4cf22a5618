#!/usr/bin/env bash
# `make image`: build the Dockerfile with buildah without any registry and write the OCI archive.
#   - BASE: a Debian root filesystem made by mmdebstrap (image/make-base.sh), cached in build/image/
#   - wheels: built on the host with pip (pip inside the build container reaches no index),
#     mounted at /wheels and installed with --no-index.
# Usage: image/build-offline.sh IMAGE_REF OUT.tar     (env PIP: the host pip, default .venv/bin/pip)
set -euo pipefail
cd "$(dirname "$0")/.."
ref=$1
out=$2
pip=${PIP:-.venv/bin/pip}
work=build/image
mkdir -p "$work" "$(dirname "$out")"
buildah=(buildah --root "$PWD/$work/storage" --runroot "$PWD/$work/run" --storage-driver vfs)
step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

# 1. The base: rebuilt when its package list or recipe changes (by content, so checkouts that only touch
#    file times keep it).
base_tar=$work/base-bookworm.tar
base_key=$(cat image/base-packages.txt image/make-base.sh | sha256sum | cut -c1-16)
if [[ ! -f $base_tar || $(cat "$base_tar.key" 2>/dev/null) != "$base_key" ]]; then
  step "base root filesystem (mmdebstrap)"
  image/make-base.sh "$base_tar"
  echo "$base_key" > "$base_tar.key"
fi
base_ref=localhost/kubedrift-base:$(sha256sum "$base_tar" | cut -c1-16)
if ! "${buildah[@]}" inspect --type image "$base_ref" >/dev/null 2>&1; then
  step "import $base_ref"
  ctr=$("${buildah[@]}" from scratch)
  "${buildah[@]}" add "$ctr" "$base_tar" /
  "${buildah[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$ctr"
  "${buildah[@]}" commit --quiet --rm "$ctr" "$base_ref" >/dev/null
  for old in $("${buildah[@]}" images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/kubedrift-base:' || true); do
    [[ $old == "$base_ref" ]] || "${buildah[@]}" rmi "$old" >/dev/null
  done
fi

# 2. The wheelhouse: every pinned dependency (image/wheelhouse.sh).
wheels=$work/wheels
step "wheels (pip wheel on the host)"
PIP=$pip image/wheelhouse.sh "$wheels"

# 3. The Dockerfile, as users build it, with the offline base and wheels.
step "buildah build $ref"
version=$(.venv/bin/python -c 'import re; print(re.search(r"__version__ = \"(.+)\"", open("operator/kubedrift/__init__.py").read())[1])')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain --untracked-files=no -- operator pyproject.toml Dockerfile 2>/dev/null) ]]; then
  revision="$revision-dirty"
fi
"${buildah[@]}" build --quiet --isolation chroot --pull=never \
  --build-arg BASE="$base_ref" \
  --build-arg PIP_OPTIONS="--no-index --find-links /wheels" \
  --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --volume "$PWD/$wheels:/wheels:ro" \
  --tag "$ref" --file Dockerfile . >/dev/null

step "write $out"
rm -f "$out.tmp"
"${buildah[@]}" push --quiet "$ref" "oci-archive:$out.tmp:$ref"
mv "$out.tmp" "$out"
# Drop what older builds left behind (the base stays).
"${buildah[@]}" rmi --prune >/dev/null 2>&1 || true
step "done: $out $(du -h "$out" | cut -f1)"
