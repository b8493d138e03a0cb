# syntax=docker/dockerfile:1
# The economy service: catalog, wallets, the ledger, market, trades and auctions.
# Build from the repository root (the whole workspace is the context):
#   docker build -f docker/economy.Dockerfile -t flotilla/economy:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directory are BuildKit cache mounts, so a rebuild compiles only what
# changed. A cache mount is not part of the image, hence the copy out in the same step.
# The target cache is shared by all the images (same workspace, same profile) and locked,
# so parallel builds wait for each other instead of corrupting it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,id=flotilla-target,sharing=locked \
    cargo build --release --locked -p flotilla-economy --bin flotilla-economy \
    && cp target/release/flotilla-economy /usr/local/bin/flotilla-economy

# glibc and libgcc, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/flotilla-economy /usr/local/bin/flotilla-economy
# Numeric, so the kubelet can check the chart's runAsNonRoot without looking up a name.
USER 65532:65532
# 8080 HTTP API, 9090 /metrics, /healthz and /readyz.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/flotilla-economy"]
