# syntax=docker/dockerfile:1
# Load-test players for a game server (a client: it listens on nothing). Build from the
# repository root:
#   docker build -f docker/bots.Dockerfile -t flotilla/bots:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts as in operator.Dockerfile: incremental rebuilds, one target cache shared and
# locked between the images, the binary copied out before the mount goes away.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,id=flotilla-target,sharing=locked \
    cargo build --release --locked -p flotilla-gameserver --bin flotilla-bots \
    && cp target/release/flotilla-bots /usr/local/bin/flotilla-bots

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/flotilla-bots /usr/local/bin/flotilla-bots
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flotilla-bots"]
