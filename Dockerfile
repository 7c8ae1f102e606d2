# The agent's image. It drives the host's Docker through the mounted socket with the docker CLI
# and Compose v2 from Debian trixie (the same Compose the stack is tested with), and reads local
# or file:// git sources with git. Build offline like the stack: scripts/bootstrap first.
#   docker build -t hastack/agent .
# Run it with the socket, its state directory and the source repository mounted at the SAME
# paths as on the host (bind mounts in the stack resolve on the host): see scripts/up.
FROM golang:1.26-trixie AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/agent ./cmd/agent

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
