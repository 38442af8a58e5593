# syntax=docker/dockerfile:1

# Base images, each pinned by the digest of its tag's multi-platform index,
# with the tag beside it for readers (deploy/check refuses an unpinned FROM).
# A digest is the image's content: the same Dockerfile then builds on the
# same bases until someone bumps them on purpose. To bump (see
# docs/operations.md), resolve the tag's current multi-platform digest with
#   crane digest golang:1.26
#   crane digest gcr.io/distroless/static:nonroot
# (or "docker buildx imagetools inspect <tag>"), replace the digest after
# the tag, and build and run .ci/image-check before merging.

# Build stage: runs on the build machine's platform and cross-compiles for
# the target's (GOOS/GOARCH from TARGETOS/TARGETARCH), so that an arm64 image
# never builds under emulation. The binary is static: no libc at run time.
FROM --platform=$BUILDPLATFORM golang:1.26@sha256:3aff6657219a4d9c14e27fb1d8976c49c29fddb70ba835014f477e1c70636647 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src

# Modules first: a source change then reuses the cached download layer.
# Cache mounts keep the module and build caches across builds.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o bin/gateway .

# Runtime stage: distroless static has no shell and no package manager.
# The nonroot variant runs as UID/GID 65532; USER repeats it for readers and scanners.
#
# .ko.yaml builds the same binary the same way (CGO_ENABLED=0, -trimpath,
# -s -w, main.version) onto the same base. ko differs only where it must:
# the binary is /ko-app/bluetape-gateway instead of /gateway, and ko sets
# the entrypoint and its own labels (the revision and creation time come
# from the build command's --image-label, see .ci/image-check).
FROM gcr.io/distroless/static:nonroot@sha256:e2e927ec666bae08560abb3c55d0659eceabb657f56b6782ab500a9fc7f555e3
ARG VERSION=dev
# REVISION: the commit (git rev-parse HEAD). CREATED: the build time, RFC 3339
# (for a reproducible build, the commit's time: git log -1 --format=%cI).
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="bluetape-gateway" \
      org.opencontainers.image.description="Internal gateway to BlueTape's customer signup API" \
      org.opencontainers.image.source="https://github.com/bluetape/bluetape-gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /src/bin/gateway /gateway
USER 65532:65532
# 8080: API (GATEWAY_LISTEN_ADDR). 9090: admin, /metrics, /healthz, /readyz (GATEWAY_ADMIN_ADDR).
EXPOSE 8080 9090
ENTRYPOINT ["/gateway"]
