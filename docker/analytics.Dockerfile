# syntax=docker/dockerfile:1
# The analytics service: event collection, the log, the exactly-once pipeline, KPIs.
# Build from the repository root (the whole workspace is the context):
#   docker build -f docker/analytics.Dockerfile -t flotilla/analytics:0.1.0 .

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
    cargo build --release --locked -p flotilla-analytics --bin flotilla-analytics \
    && cp target/release/flotilla-analytics /usr/local/bin/flotilla-analytics

# glibc and libgcc, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/flotilla-analytics /usr/local/bin/flotilla-analytics
# Numeric, so the kubelet can check the chart's runAsNonRoot without looking up a name.
USER 65532:65532
# 8080 HTTP API, 9090 /metrics, /healthz and /readyz.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/flotilla-analytics"]
