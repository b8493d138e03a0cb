# syntax=docker/dockerfile:1
# The reference QUIC game server. Build from the repository root:
#   docker build -f docker/gameserver.Dockerfile -t flotilla/gameserver:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts as in operator.Dockerfile: incremental rebuilds, one target cache shared and
# locked between the images, the binary copied out before the mount goes away.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,id=flotilla-target,sharing=locked \
    cargo build --release --locked -p flotilla-gameserver --bin flotilla-gameserver \
    && cp target/release/flotilla-gameserver /usr/local/bin/flotilla-gameserver

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/flotilla-gameserver /usr/local/bin/flotilla-gameserver
USER 65532:65532
# 7777/udp QUIC (FLOTILLA_GAME_PORT), 9100 /metrics and /healthz (FLOTILLA_METRICS_PORT).
# The server binds to POD_IP, which the operator sets on every game-server pod.
EXPOSE 7777/udp 9100/tcp
ENTRYPOINT ["/usr/local/bin/flotilla-gameserver"]
