# The agent's image. It drives the host's Docker through the mounted socket with the docker CLI
# and Compose v2 from Debian trixie (the same Compose the stack is tested with), and reads local
# or file:// git sources with git. Build offline like the stack: scripts/bootstrap first.
#   docker compose -f stack/docker-compose.yml -f scripts/agent-image.yml build agent
# Run it with the socket, its state directory and the source repository mounted at the SAME
# paths as on the host (bind mounts in the stack resolve on the host): see scripts/up.
# The build stage is the same in every image made from this repository's Go programs (the
# agent's, lb-health's, docker-proxy's and Alertmanager's; e2e/static_test.go checks it): it
# builds them all, so that BuildKit, building the images together, compiles once for all, and
# the cache mounts keep compiled packages for the next build (a commit to internal/ rebuilds
# in seconds). BuildKit only: Compose builds with it; `docker build` needs DOCKER_BUILDKIT=1
# (and, with Docker 23 or later, the buildx plugin).
FROM golang:1.26-trixie AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,id=hastack-go-mod,target=/go/pkg/mod \
    go mod download
COPY cmd ./cmd
COPY internal ./internal
RUN --mount=type=cache,id=hastack-go-mod,target=/go/pkg/mod \
    --mount=type=cache,id=hastack-go-build,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/...

FROM debian:trixie-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends docker-cli docker-compose git openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    # The source repository is owned by the host's user, not the container's root.
    && git config --system --add safe.directory '*'
COPY --from=build /out/agent /usr/local/bin/agent
# `agent run` reads it, and so do `docker exec hastack-agent agent status|sync|diff` (address, token).
ENV HASTACK_AGENT_CONFIG=/etc/hastack-agent/agent.yml
ENTRYPOINT ["/usr/local/bin/agent"]
CMD ["run"]
