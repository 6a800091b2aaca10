#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules (no Docker, no release downloads) into a version-keyed cache.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"
KUEUE_VERSION="${KUEUE_VERSION:-v0.17.0}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
PEER_VERSION="${PEER_VERSION:-v1.8.1}"  # the Kubeflow training-operator that `make bench` measures beside Runyard
CACHE="${RUNYARD_CACHE:-$HOME/.cache/runyard}"
ONLY="${1:-all}"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { printf '[build-binaries] %s\n' "$*" >&2; }

k8s_dir="$CACHE/bin/kubernetes-$K8S_VERSION"
etcd_dir="$CACHE/bin/etcd-$ETCD_VERSION"
kwok_dir="$CACHE/bin/kwok-$KWOK_VERSION"
helm_dir="$CACHE/bin/helm-$HELM_VERSION"
coredns_dir="$CACHE/bin/coredns-$COREDNS_VERSION-min"
kueue_dir="$CACHE/bin/kueue-$KUEUE_VERSION"
peer_dir="$CACHE/bin/training-operator-$PEER_VERSION"

# Each component gets its own throw-away module so MVS never lifts shared deps across them.
new_module() {
  local dir="$1"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && go mod init runyard.local/build >/dev/null 2>&1)
}

# The real node's kubelet and kube-proxy come from the same module and ldflags as the control plane.
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

build_k8s() {
  local missing=()
  for b in "${K8S_BINARIES[@]}"; do [ -x "$k8s_dir/$b" ] || missing+=("$b"); done
  [ "${#missing[@]}" = 0 ] && { log "kubernetes $K8S_VERSION cached"; return; }
  local src="$CACHE/src/kubernetes-$K8S_VERSION"
  if [ ! -f "$src/go.mod" ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" "$src/go.mod"; then
    prepare_k8s_module "$src"
  fi
  cd "$src"
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  local pkgs=()
  for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  mkdir -p "$k8s_dir.tmp"
  log "building ${missing[*]} (slow on a cold cache)"
  go build -trimpath -tags selinux,notest -ldflags "all=$ld" -o "$k8s_dir.tmp/" "${pkgs[@]}"
  mkdir -p "$k8s_dir"
  for b in "${missing[@]}"; do mv "$k8s_dir.tmp/$b" "$k8s_dir/$b"; done
  rm -rf "$k8s_dir.tmp"
}

prepare_k8s_module() {
  local src="$1"
  new_module "$src"
  cd "$src"
  log "resolving k8s.io/kubernetes@$K8S_VERSION"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # Staging modules are required at v0.0.0 upstream; point each at its published v0.<minor>.<patch> tag.
  local staging_ver="v0.${K8S_VERSION#v1.}"
  local mods
  mods=$(grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk '{print $1}')
  for m in $mods; do go mod edit -replace="$m=$m@$staging_ver"; done
  log "$(echo "$mods" | wc -l) staging replaces at $staging_ver"
  local tools=()
  for b in "${K8S_BINARIES[@]}"; do tools+=("k8s.io/kubernetes/cmd/$b@$K8S_VERSION"); done
  go get -tool "${tools[@]}"
}

build_simple() {  # name module-path pkg version outdir
  local name="$1" mod="$2" pkg="$3" ver="$4" out="$5"
  [ -x "$out/$name" ] && { log "$name $ver cached"; return; }
  local src="$CACHE/src/$name-$ver"
  new_module "$src"
  cd "$src"
  go get -tool "$pkg@$ver"
  mkdir -p "$out.tmp"
  go build -trimpath -ldflags "all=-s -w ${6:-}" -o "$out.tmp/$name" "$pkg"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# CoreDNS with only the plugins the real node's Corefile uses (hack/realnode.py: bind, health, errors, cache,
# kubernetes), built the way CoreDNS documents for a custom plugin set: a main package that imports coremain and those
# plugins and sets the directive order. Its full build compiles every cloud plugin (AWS, Azure, GCP SDKs): a third
# longer on a cold cache.
build_coredns() {
  [ -x "$coredns_dir/coredns" ] && { log "coredns $COREDNS_VERSION cached"; return; }
  local src="$CACHE/src/coredns-$COREDNS_VERSION-min"
  new_module "$src"
  cd "$src"
  cat > main.go <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

// The order of CoreDNS's plugin.cfg, restricted to the plugins imported above.
func init() { dnsserver.Directives = []string{"bind", "health", "errors", "cache", "kubernetes"} }

func main() { coremain.Run() }
GO
  go get "github.com/coredns/coredns@$COREDNS_VERSION"
  mkdir -p "$coredns_dir.tmp"
  go build -trimpath -ldflags "all=-s -w" -o "$coredns_dir.tmp/coredns" .
  rm -rf "$coredns_dir" && mv "$coredns_dir.tmp" "$coredns_dir"
}

# Kueue's manager, and its CRDs from the same module (the gang-admission tests install them on the local cluster).
build_kueue() {
  build_simple kueue sigs.k8s.io/kueue sigs.k8s.io/kueue/cmd/kueue "$KUEUE_VERSION" "$kueue_dir"
  [ -d "$kueue_dir/crds" ] && return
  local dir
  dir=$(cd "$CACHE/src/kueue-$KUEUE_VERSION" && go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$kueue_dir/crds.tmp" && cp "$dir"/config/components/crd/bases/*.yaml "$kueue_dir/crds.tmp/"
  mv "$kueue_dir/crds.tmp" "$kueue_dir/crds"
}

# The peer for `make bench` (not part of `all`): its manager, and its CRDs from the same module.
build_peer() {
  build_simple training-operator github.com/kubeflow/training-operator \
    github.com/kubeflow/training-operator/cmd/training-operator.v1 "$PEER_VERSION" "$peer_dir"
  [ -d "$peer_dir/crds" ] && return
  local dir
  dir=$(cd "$CACHE/src/training-operator-$PEER_VERSION" && go mod download -json "github.com/kubeflow/training-operator@$PEER_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$peer_dir/crds.tmp" && cp "$dir"/manifests/base/crds/kubeflow.org_pytorchjobs.yaml "$peer_dir/crds.tmp/"
  mv "$peer_dir/crds.tmp" "$peer_dir/crds"
}

case "$ONLY" in
  peer) build_peer ;;
  all|k8s) build_k8s ;;&
  all|etcd) build_simple etcd go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$etcd_dir" ;;&
  all|coredns) build_coredns ;;&
  all|kueue) build_kueue ;;&
  all|kwok) build_simple kwok sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" "$kwok_dir" ;;&
  all|helm)
    hminor="${K8S_VERSION#v1.}"; hminor="${hminor%%.*}"
    build_simple helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$helm_dir" \
      "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$hminor -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$hminor" ;;
esac
log "done"
