#!/usr/bin/env bash
# Fetches uPlot VERSION from the npm registry (npm checks the tarball against the registry's
# integrity hash) and replaces the vendored files with its dist build and licence.
set -euo pipefail
version=${1:?usage: update.sh VERSION}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$work/package/LICENSE" "$here/"
sed -i "s/uPlot [0-9.]*$/uPlot $version/; s/uplot@[0-9.]*/uplot@$version/" "$here/README.md"
(cd "$here" && sha256sum uPlot.iife.min.js uPlot.min.css)
echo "update the sha256 table in $here/README.md with the sums above"
