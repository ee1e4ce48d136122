# syntax=docker/dockerfile:1
ARG GO_VERSION=1.22
ARG BASE="debian:bookworm"

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS Build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly"
COPY --link go.mod go.sum ./
RUN --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,source=.,target=/src,rw \
    go build -o /out/app ./cmd/app

FROM ${BASE}
LABEL org.opencontainers.image.title="app" maintainer=me
COPY --from=build --chown=1000:1000 --chmod=0755 /out/app /usr/local/bin/app
EXPOSE 8080 9090/udp
USER 1000:1000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["/usr/local/bin/app", "health"]
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--serve"]
