# syntax=docker/dockerfile:1

# Build stage: compile a static binary so that the runtime image needs no libc.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src

# Modules first: a source change then reuses the cached download layer.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o bin/gateway .

# Runtime stage: distroless static has no shell and no package manager.
# The nonroot variant runs as UID/GID 65532; USER repeats it for readers and scanners.
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="bluetape-gateway" \
      org.opencontainers.image.description="Internal gateway to BlueTape's customer signup API" \
      org.opencontainers.image.source="https://github.com/bluetape/bluetape-gateway" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /src/bin/gateway /gateway
USER 65532:65532
# 8080: API (GATEWAY_LISTEN_ADDR). 9090: admin, /metrics, /healthz, /readyz (GATEWAY_ADMIN_ADDR).
EXPOSE 8080 9090
ENTRYPOINT ["/gateway"]
