# paas-operator container image.
#
# The final image is `FROM scratch`: the static paas-operator binary, a pinned
# static Helm 4, the CA bundle and an empty world-writable /tmp. No shell, no
# package manager, no libc. It runs as the numeric user 65532:65532 and is
# happy with a read-only root filesystem: helm's cache/config/data dirs and
# HOME point at /tmp (a tmpfs/emptyDir in production).
#
# Two ways to build the same final image (identical `base` stage):
#
#  1. A normal Docker/BuildKit environment (builds everything in builder stages):
#        docker build -t paas-operator:dev .
#     The default target is the last stage, `image`: helm is compiled from the
#     Go module proxy (sha256 verified), paas-operator from this checkout.
#
#  2. No daemon, no base images (this repository's CI): `scripts/build-image`
#     compiles both binaries on the host with the same pins, verifies helm's
#     sha256, stages them in target/image/rootfs/ and runs
#        buildah bud --target prebuilt -t paas-operator:dev .
#     The `prebuilt` stage only copies that directory: nothing is pulled.
#
# Helm pin. HELM_SHA256 is the sha256 of the binary produced by
#   CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=go${GO_VERSION} \
#     go install -trimpath \
#       -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
#       helm.sh/helm/v4/cmd/helm@${HELM_VERSION}
# on linux/amd64 (Go builds are reproducible: same Go + same flags = same
# bytes). The module source itself is verified by the Go checksum database
# (HELM_MODULE_SUM is its go.sum line). Both flows check HELM_SHA256 and fail
# on a mismatch. To bump helm: change HELM_VERSION, run
# `HELM_SHA256_UPDATE=1 scripts/build-image`, which prints the new sha256 and
# module hash; put them here, review, commit. The Rust binary is built for
# x86_64-unknown-linux-gnu with static glibc (the musl target is not available
# in the daemonless environment); linux/amd64 images only.
ARG HELM_VERSION=v4.3.1
ARG HELM_SHA256=b547686c2046352206f365bee51e56bf38a693401a66f2491a5dd92bf08a0b91
ARG HELM_MODULE_SUM=h1:UndCoLe9UPmNoL7IvWzaUXveL7T5t/ijoorEmgJdI9g=
ARG GO_VERSION=1.26.8
ARG RUST_VERSION=1.95.0

# ---------------------------------------------------------------------------
# base: metadata, environment and user shared by both flows.
FROM scratch AS base
ARG HELM_VERSION
ARG HELM_SHA256
ARG HELM_MODULE_SUM
ARG GO_VERSION
LABEL org.opencontainers.image.title="paas-operator" \
      org.opencontainers.image.description="HTTP service that performs Helm operations for a multi-tenant PaaS" \
      org.opencontainers.image.licenses="MIT" \
      io.paas-operator.helm.version="${HELM_VERSION}" \
      io.paas-operator.helm.sha256="${HELM_SHA256}" \
      io.paas-operator.helm.module-sum="${HELM_MODULE_SUM}" \
      io.paas-operator.helm.go-version="go${GO_VERSION}"
ENV PATH=/usr/local/bin \
    HOME=/tmp \
    TMPDIR=/tmp \
    HELM_BINARY=/usr/local/bin/helm \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOST=0.0.0.0 \
    PORT=8000
EXPOSE 8000
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/paas-operator"]

# ---------------------------------------------------------------------------
# prebuilt: the daemonless flow. scripts/build-image fills target/image/rootfs/
#   usr/local/bin/paas-operator  (static, RUSTFLAGS=-C target-feature=+crt-static)
#   usr/local/bin/helm           (static, CGO_ENABLED=0, sha256 = HELM_SHA256)
#   etc/ssl/certs/ca-certificates.crt   (the build host's CA bundle)
#   tmp/                         (mode 1777)
FROM base AS prebuilt
COPY target/image/rootfs/ /

# ---------------------------------------------------------------------------
# Builder stages for a normal Docker environment (not used by `--target prebuilt`).
FROM golang:${GO_VERSION}-bookworm AS helm-build
ARG HELM_VERSION
ARG HELM_SHA256
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local GOBIN=/out
RUN go install -trimpath \
      -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
      "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}" \
 && echo "${HELM_SHA256}  /out/helm" | sha256sum -c -

FROM rust:${RUST_VERSION}-bookworm AS rust-build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY k8s/tenant-policy.yaml ./k8s/tenant-policy.yaml
RUN RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/tmp \
 && chmod 1777 /rootfs/tmp \
 && cp target/x86_64-unknown-linux-gnu/release/paas-operator /rootfs/usr/local/bin/ \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

# ---------------------------------------------------------------------------
# image: the default target of `docker build`.
FROM base AS image
COPY --from=rust-build /rootfs/ /
COPY --from=helm-build /out/helm /usr/local/bin/helm
