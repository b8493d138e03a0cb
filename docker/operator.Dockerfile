# syntax=docker/dockerfile:1
# The operator: controllers, SDK endpoint, allocation API and metrics in one binary.
# Build from the repository root (the whole workspace is the context):
#   docker build -f docker/operator.Dockerfile -t flotilla/operator:0.1.0 .

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
    cargo build --release --locked -p flotilla-operator --bin flotilla-operator \
    && cp target/release/flotilla-operator /usr/local/bin/flotilla-operator

# glibc and libgcc, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/flotilla-operator /usr/local/bin/flotilla-operator
# Numeric, so the kubelet can check the chart's runAsNonRoot without looking up a name.
USER 65532:65532
# 9358 SDK, 8443 allocation API, 8080 /metrics, /healthz and /readyz.
EXPOSE 9358 8443 8080
ENTRYPOINT ["/usr/local/bin/flotilla-operator"]
