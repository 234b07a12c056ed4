# syntax=docker/dockerfile:1
#
# One image for the three programs: the command chooses which one runs.
#
#   docker build -t atrium --build-arg VERSION=$(git describe --tags --always) --build-arg COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm -p 8000:8000 atrium                       # the whole cloud on embedded stores
#   docker run --rm atrium atrium -target=sensor -store mongodb://…
#   docker run --rm -p 1883:1883 atrium atrium-agent -cloud-url http://… -token …
#   docker run --rm atrium atrium-sim -broker tcp://agent:1883
#
# The final stage is Alpine rather than distroless: compose healthchecks need an HTTP
# client inside the container (busybox wget) and the programs have no probe mode of
# their own. It stays small (about 8 MB plus the binaries), carries CA certificates
# and runs as a fixed non-root user, 10001.

ARG GO_VERSION=1.26

# ---- build: static, pure-Go binaries (CGO_ENABLED=0), cross-compiled for the target platform.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X github.com/atrium-iot/atrium/internal/version.Version=${VERSION} -X github.com/atrium-iot/atrium/internal/version.Commit=${COMMIT}" \
      -o /out/ ./cmd/atrium ./cmd/atrium-agent ./cmd/atrium-sim

# ---- run
FROM alpine:3.22
RUN apk add --no-cache ca-certificates \
 && addgroup -S -g 10001 atrium \
 && adduser -S -D -H -u 10001 -G atrium -h /var/lib/atrium atrium \
 && mkdir -p /var/lib/atrium /var/lib/atrium-agent /etc/atrium \
 && chown atrium:atrium /var/lib/atrium /var/lib/atrium-agent
COPY --from=build /out/atrium /out/atrium-agent /out/atrium-sim /usr/local/bin/
# A named volume mounted on one of these directories starts out owned by the user below.
WORKDIR /var/lib/atrium
ENV ATRIUM_DATA_DIR=/var/lib/atrium \
    ATRIUM_LOG_FORMAT=json
USER 10001:10001
# gateway, sensor, room, analytics, notification; the agent's MQTT broker and status server.
EXPOSE 8000 8001 8002 8003 8004 1883 9100
# No HEALTHCHECK here: which endpoint to probe depends on the program the container runs;
# docker-compose.yml sets one per service (wget -q -O /dev/null http://127.0.0.1:PORT/readyz).
CMD ["atrium"]
