#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and helm from their Go
# modules into a cache directory outside the clone, and does nothing when they are already built
# at the pinned versions. Prints the directory holding the binaries.
#
#   FLOTILLA_CACHE  where built binaries live (default ~/.cache/flotilla)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/versions.env"
cache=${FLOTILLA_CACHE:-$HOME/.cache/flotilla}
out="$cache/cluster-bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
stamp="$out/.complete"

helm_stamp="$out/.helm-$HELM_VERSION"
if [[ -f "$stamp" && -f "$helm_stamp" ]]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out"

# -trimpath keeps the binaries independent of where the module cache lives; -s -w drops the
# symbol tables, which halves the link time and the size of kube-apiserver.
k8s_minor=${K8S_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build() { # module-dir output-name package
  echo "building $2 ($3)" >&2
  (cd "$1" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$2.tmp" "$3")
  mv "$out/$2.tmp" "$out/$2"
}
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [[ -x "$out/$cmd" ]] || build "$here/k8s" "$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
[[ -x "$out/etcd" ]] || build "$here/etcd" etcd .
# helm is a plain Go module without replace directives, so `go install` builds it as released.
if [[ ! -f "$helm_stamp" ]]; then
  echo "building helm $HELM_VERSION" >&2
  gobin=$(mktemp -d)
  GOBIN=$gobin CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$gobin/helm" "$out/helm"
  rm -rf "$gobin"
  touch "$helm_stamp"
fi

touch "$stamp"
echo "$out"
