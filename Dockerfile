# The setpay bank (PaymentGateway and CertificateAuthority) with its keys on a SoftHSM
# token. Build with `docker build -t setpay .`; docs/OPERATIONS.md says how to make the
# token, provision the bank on it, run it, check its health and back it up.

# A tag, which moves: each rebuild may get another Python and another Debian underneath.
# An operator who must rebuild the image that was tested pins it by digest, checked with
# `docker buildx imagetools inspect` against a registry they trust:
# --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a wheel of setpay and wheels of its pinned dependencies, into a venv -------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is made of, LICENSE included (setuptools puts its text in the wheel,
# found by its default license-files): tests, docs and tooling stay out of the image.
COPY pyproject.toml README.md LICENSE ./
COPY deploy/constraints.txt deploy/constraints.txt
COPY protos protos
COPY setcore setcore
COPY hsm hsm
COPY gateway gateway
COPY clients clients
COPY cli cli
# The wheel's build environment is pinned as the dependencies are, to the setuptools that
# `make venv` builds with (deploy/dev-constraints.txt; tests/deploy checks that they agree):
# --constraint leaves it to the newest setuptools, --build-constraint does not. That needs
# pip 25.3 or later, and the base image's pip (the one its Python bundles) is older: pip
# is first upgraded to its pin. The venv has no pip of its own: that pip fills it, and the
# runtime stage gets setpay and its dependencies only.
ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
RUN python -m pip install "pip==${PIP_VERSION}" \
    && echo "setuptools==${SETUPTOOLS_VERSION}" >deploy/build-constraints.txt \
    && python -m venv --without-pip /opt/setpay \
    && pip wheel --constraint deploy/constraints.txt \
        --build-constraint deploy/build-constraints.txt --wheel-dir /wheels . \
    && pip --python /opt/setpay/bin/python install --no-index --find-links /wheels \
        /wheels/setpay-*.whl

# --- runtime: Python, SoftHSM, pkcs11-tool and the venv; runs as a fixed non-root user ----
FROM ${PYTHON_IMAGE} AS runtime
# Debian bookworm's versions, pinned so that a rebuild gets the token software that was
# tested (SoftHSM 2.6.1: OAEP with SHA-1 only). When Debian replaces one with a security
# update the build fails loudly: test the new version, then pass it with --build-arg.
ARG SOFTHSM2_VERSION=2.6.1-2.1
ARG OPENSC_VERSION=0.23.0-0.3+deb12u2
# Fixed ids, so that volumes keep their owner across rebuilds and a host directory can be
# given to the container with a plain chown.
ARG SETPAY_UID=10001
ARG SETPAY_GID=10001
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        softhsm2="${SOFTHSM2_VERSION}" \
        libsofthsm2="${SOFTHSM2_VERSION}" \
        opensc="${OPENSC_VERSION}" \
    && rm -rf /var/lib/apt/lists/*
# The token directory (made by Debian's SoftHSM packages for group softhsm) is given to
# setpay alone (0700); its parent only needs to be searchable by others. /etc/setpay
# holds the PIN files, /var/lib/setpay the bank directory that `setpay init` writes.
RUN groupadd --gid "${SETPAY_GID}" setpay \
    && useradd --uid "${SETPAY_UID}" --gid setpay --home-dir /var/lib/setpay \
        --no-create-home --shell /usr/sbin/nologin setpay \
    && chmod 0711 /var/lib/softhsm \
    && install -d -o setpay -g setpay -m 0700 /var/lib/softhsm/tokens /etc/setpay \
        /var/lib/setpay
COPY --from=build /opt/setpay /opt/setpay
# Not in /etc/softhsm: Debian keeps that directory readable by group softhsm only, and a
# supplementary group is dropped whenever the container runs as uid:gid (as USER below
# does), so the SoftHSM library could not read its configuration.
COPY --chmod=0644 deploy/softhsm2.conf /etc/setpay-softhsm2.conf
# (COPY --chmod needs BuildKit, Docker's default builder since version 23.)
COPY --chmod=0755 deploy/provision-token.sh /usr/local/bin/setpay-provision-token
# The listen addresses override the configuration's 127.0.0.1: inside a container the
# ports must be reachable from the container's network interface. PaymentGateway is
# mutual TLS (merchants), CertificateAuthority server TLS (wallets and merchants).
ENV PATH=/opt/setpay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOFTHSM2_CONF=/etc/setpay-softhsm2.conf \
    SETPAY_LISTEN=0.0.0.0:7443 \
    SETPAY_CA_LISTEN=0.0.0.0:7444
VOLUME ["/var/lib/softhsm/tokens", "/etc/setpay", "/var/lib/setpay"]
WORKDIR /var/lib/setpay
USER ${SETPAY_UID}:${SETPAY_GID}
EXPOSE 7443 7444
# The probe asks the CertificateAuthority port: it needs no client certificate, and both
# ports report the same probes (key backend and ledger). The TLS certificate from
# `setpay init` names 127.0.0.1, so the probe verifies it as any client does. The probe's
# own deadline is 3 s; a 10 s timeout also covers Python starting up. The port is that of
# SETPAY_CA_LISTEN above: exec form, so that no shell runs in the probe. An operator who
# sets SETPAY_CA_LISTEN to another port gives the probe the same one (`docker run
# --health-cmd`, or a compose file's healthcheck), else the container reports unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["setpay", "health", "--target", "127.0.0.1:7444", "--ca", "/var/lib/setpay/tls/root.pem"]
ENTRYPOINT ["setpay"]
CMD ["gateway", "serve", "--config", "/var/lib/setpay/setpay.toml"]
