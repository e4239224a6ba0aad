# syntax=docker/dockerfile:1
# One image for every kruise-mesh component; each Deployment in deploy/ picks its entrypoint:
#   python -m services.gateway | services.placement | services.rollout | services.budget
# Build: make image (docker, podman or buildah; IMAGE=... to name it otherwise).
# The base is the official python:3.11-slim, or, where no registry is reachable, Debian
# bookworm's own python3 built by scripts/base_image.sh (make image falls back to it). Both
# stages use the same base, so the venv's python link (/usr/local/bin or /usr/bin) holds.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project (runtime dependencies only, no dev extras) into a venv --------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/kruise-mesh
WORKDIR /src
# pyproject.toml declares readme = "README.md", so the build needs it. setup.py copies deploy/
# into the package (services/_deploy), so every command finds the CRDs and webhook manifests.
# constraints.txt (make lock) pins every dependency: two builds on two days install the same.
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY deploy/ deploy/
COPY services/ services/
COPY sandbox/ sandbox/
COPY bench/ bench/
COPY gen/ gen/
# The secret ca-bundle (optional; make image passes the host's /etc/ssl/certs/ca-certificates.crt)
# lets pip through a TLS-inspecting proxy the host trusts; it is mounted for this step only
# and never stored in the image.
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && /opt/kruise-mesh/bin/pip install --constraint constraints.txt . \
 && /opt/kruise-mesh/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/kruise-mesh/bin/python -m compileall -q /opt/kruise-mesh

# --- runtime: the venv only, run as a non-root user ---------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kruise-mesh" \
      org.opencontainers.image.description="OpenKruise v1.2 pod-level guarantees as async gRPC services" \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode is compiled at build time; the root filesystem is read-only at run time.
ENV PATH=/opt/kruise-mesh/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# No installer at run time (scanners flag them): python:3.11-slim's pip, setuptools and wheel
# go; on the Debian base, the venv module's bundled pip and setuptools wheels go.
RUN if python3 -m pip --version >/dev/null 2>&1; then \
      python3 -m pip uninstall --yes pip setuptools wheel; fi \
 && rm -f /usr/local/bin/pip /usr/local/bin/pip3* \
 && if dpkg-query --show python3-pip-whl >/dev/null 2>&1; then \
      dpkg --purge python3-venv python3.11-venv python3-pip-whl python3-setuptools-whl; fi \
 && groupadd --system --gid 10001 kruise \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kruise
COPY --from=build /opt/kruise-mesh /opt/kruise-mesh
# Numeric, so that runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /tmp
# gateway: gRPC 7000, webhook HTTPS 9443; services: gRPC 7100; everyone: metrics/health 9090.
EXPOSE 7000 7100 9090 9443
CMD ["python", "-c", "print('kruise-mesh: one image, one component per container. Run one of:\\n  python -m services.gateway     (Kubernetes client: webhooks :9443, ClusterService :7000)\\n  python -m services.placement   (PersistentPodState, gRPC :7100)\\n  python -m services.rollout     (CloneSet, gRPC :7100)\\n  python -m services.budget      (PodUnavailableBudget, gRPC :7100)\\nMetrics and health on :9090. See deploy/ for the Kubernetes manifests.')"]
