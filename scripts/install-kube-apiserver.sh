#!/usr/bin/env bash
# Build the upstream apiextensions-apiserver (a real Kubernetes API server that serves CRDs and
# custom objects) from Debian sid's Go source packages, and take etcd from Debian sid's
# etcd-server package. Result: ${PYMIRROR_CACHE:-~/.cache/pymirror}/kube/{apiextensions-apiserver,etcd}
# plus VERSIONS. Idempotent: skips everything when both binaries are present.
#
# The host's apt state is never touched: a private sources list (`sid main` of the mirror that
# /etc/apt/sources.list.d/debian.sources names), private lists/cache dirs and an empty dpkg
# status, so apt resolves against nothing installed and only downloads .debs. Each .deb is
# unpacked with dpkg-deb -x into one private root; `go build` runs there in GOPATH mode with no
# network (GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0).
# Cold: 2.5 min measured on 2 idle cores, 5 min on busy ones (322 .debs, mostly `go build`).
# Everything is unpacked in a scratch dir (see below) and removed at exit.
# See tests/kube/README.md and the "Kubernetes API" section of the project's infrastructure notes.
set -euo pipefail

CACHE=${PYMIRROR_CACHE:-$HOME/.cache/pymirror}
DIR=$CACHE/kube
APISERVER=$DIR/apiextensions-apiserver
ETCD=$DIR/etcd
TOP=golang-k8s-apiextensions-apiserver-dev
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "install-kube-apiserver: [${SECONDS}s] $*"; }

if [[ -x $APISERVER && -x $ETCD ]]; then
    say "already installed in $DIR"
    cat "$DIR/VERSIONS" 2>/dev/null || true
    "$ETCD" --version | sed -n 1p  # not head: an early close would SIGPIPE etcd under pipefail
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || {
        say "ERROR: $tool not found (this script needs a Debian/Ubuntu host)" >&2
        exit 1
    }
done

# The Debian mirror the host already uses (first URIs: of debian.sources whose path ends in
# /debian, not -security); fall back to deb.debian.org.
MIRROR=""
if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    MIRROR=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' \
        /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $MIRROR && -r /etc/apt/sources.list ]]; then
    MIRROR=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }' \
        /etc/apt/sources.list)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR=${MIRROR%/}

# Scratch space: ~3.3 GB in many small files. Prefer tmpfs (/dev/shm) when it is exec-able
# and has room: on this project's disks (ext4 with online discard) deleting the tree took up
# to 4 min under load; on tmpfs it takes a second. PYMIRROR_BUILD_TMP overrides the choice.
scratch=${PYMIRROR_BUILD_TMP:-}
if [[ -z $scratch ]]; then
    scratch=${TMPDIR:-/tmp}
    shm_free_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
    if [[ -w /dev/shm && ${shm_free_kb:-0} -gt $((8 * 1024 * 1024)) ]] &&
        ! findmnt -no OPTIONS /dev/shm 2>/dev/null | grep -qw noexec; then
        scratch=/dev/shm
    fi
fi
start=$SECONDS
work=$(mktemp -d "$scratch/pymirror-kube-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
apt_dir=$work/apt
root=$work/root
mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,empty} "$work/debs" "$root"
signed_by=""
[[ -r $KEYRING ]] && signed_by="[signed-by=$KEYRING] "
echo "deb ${signed_by}$MIRROR sid main" >"$apt_dir/sources.list"

APT=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=$apt_dir/empty"
    -o "Dir::Etc::Preferences=$apt_dir/empty/none"
    -o "Dir::Etc::PreferencesParts=$apt_dir/empty"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::State::status=/dev/null"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Debug::NoLocking=1"
    -o "APT::Architecture=$(dpkg --print-architecture)"
    -o "APT::Architectures::=$(dpkg --print-architecture)"
    -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=root"
)

say "apt-get update (private state, $MIRROR sid main)"
apt-get "${APT[@]}" update -qq

# Every golang-* package the apiserver's source needs, recursively.
mapfile -t pkgs < <(
    apt-cache "${APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "$TOP" |
        grep -E '^golang-' | sort -u
)
# The Go toolchain golang-go points at (golang-1.NN-go, whose source is golang-1.NN-src).
GO_PKG=$(apt-cache "${APT[@]}" depends golang-go | awk '/Depends: golang-1\.[0-9]+-go$/ { print $2; exit }')
[[ -n $GO_PKG ]] || {
    say "ERROR: cannot find the golang-1.NN-go package golang-go depends on" >&2
    exit 1
}
GO_MINOR=${GO_PKG#golang-}
GO_MINOR=${GO_MINOR%-go}
pkgs+=("$GO_PKG" "golang-$GO_MINOR-src" etcd-server)
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
say "downloading ${#pkgs[@]} packages"
(cd "$work/debs" && apt-get "${APT[@]}" download -qq "${pkgs[@]}")

say "unpacking into a private root"
for deb in "$work"/debs/*.deb; do
    dpkg-deb -x "$deb" "$root"
done
# Absolute symlinks inside the packages point into the host's /usr; re-aim them into the root.
while IFS= read -r link; do
    target=$(readlink "$link")
    if [[ $target == /* ]]; then
        ln -sfn "$root$target" "$link"
    fi
done < <(find "$root" -type l)

version_of() { dpkg-deb -f "$work"/debs/"$1"_*.deb Version; }
API_VERSION=$(version_of "$TOP")
GO_VERSION=$(version_of "$GO_PKG")
ETCD_VERSION=$(version_of etcd-server)
# Debian packages the module version (0.MINOR.PATCH); the Kubernetes release is 1.MINOR.PATCH.
upstream=${API_VERSION#*:}
upstream=${upstream%%[-+~]*}
KUBE_VERSION=v1.${upstream#0.}

say "go build apiextensions-apiserver $KUBE_VERSION with go $GO_MINOR"
src=$root/usr/share/gocode/src/k8s.io/apiextensions-apiserver
mkdir -p "$DIR"
(
    cd "$src"
    env -u GOFLAGS \
        GOROOT="$root/usr/lib/go-$GO_MINOR" \
        GOPATH="$root/usr/share/gocode" \
        GOCACHE="$work/gocache" \
        GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 \
        "$root/usr/lib/go-$GO_MINOR/bin/go" build -trimpath \
        -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION" \
        -o "$APISERVER.tmp" .
)

etcd_bin=$root/usr/bin/etcd
[[ -x $etcd_bin ]] || etcd_bin=$(find "$root" -type f -name etcd -perm -u+x | head -n 1)
[[ -n $etcd_bin && -x $etcd_bin ]] || {
    say "ERROR: no etcd binary in etcd-server" >&2
    exit 1
}
install -m 0755 "$etcd_bin" "$ETCD.tmp"
"$ETCD.tmp" --version >/dev/null || {
    say "ERROR: the etcd binary from sid does not run on this host" >&2
    exit 1
}
{
    echo "apiextensions-apiserver $KUBE_VERSION ($TOP $API_VERSION)"
    echo "go $GO_PKG $GO_VERSION"
    echo "etcd etcd-server $ETCD_VERSION"
    echo "mirror $MIRROR sid main"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $((SECONDS - start)) s"
} >"$DIR/VERSIONS"
mv -f "$ETCD.tmp" "$ETCD"
mv -f "$APISERVER.tmp" "$APISERVER"
say "installed in $((SECONDS - start)) s at $DIR"
cat "$DIR/VERSIONS"
"$ETCD" --version | sed -n 1p  # not head: an early close would SIGPIPE etcd under pipefail
