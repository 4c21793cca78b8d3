// Package kubeversion stamps the Kubernetes release version into a binary
// built from k8s.io/kubernetes as a Go module. Upstream release builds set
// these variables with -ldflags -X; a plain `go build` leaves
// "v0.0.0-master+$Format:%H$", which clients (helm, kubectl's version skew
// check) cannot parse. Importing this package for its side effect keeps
// `go build` the whole build recipe.
package kubeversion

import (
	_ "unsafe" // for go:linkname

	_ "k8s.io/client-go/pkg/version" // for the linknamed variables below
	"k8s.io/component-base/version"
)

// Version must match the k8s.io/kubernetes version pinned in go.mod.
const (
	Version = "v1.36.3"
	Major   = "1"
	Minor   = "36"
)

//go:linkname cbGitVersion k8s.io/component-base/version.gitVersion
var cbGitVersion string

//go:linkname cbGitMajor k8s.io/component-base/version.gitMajor
var cbGitMajor string

//go:linkname cbGitMinor k8s.io/component-base/version.gitMinor
var cbGitMinor string

//go:linkname cbGitTreeState k8s.io/component-base/version.gitTreeState
var cbGitTreeState string

//go:linkname cgGitVersion k8s.io/client-go/pkg/version.gitVersion
var cgGitVersion string

//go:linkname cgGitMajor k8s.io/client-go/pkg/version.gitMajor
var cgGitMajor string

//go:linkname cgGitMinor k8s.io/client-go/pkg/version.gitMinor
var cgGitMinor string

//go:linkname cgGitTreeState k8s.io/client-go/pkg/version.gitTreeState
var cgGitTreeState string

func init() {
	cbGitVersion, cbGitMajor, cbGitMinor, cbGitTreeState = Version, Major, Minor, "clean"
	cgGitVersion, cgGitMajor, cgGitMinor, cgGitTreeState = Version, Major, Minor, "clean"
	// component-base caches gitVersion at its own init; refresh the cache.
	if err := version.SetDynamicVersion(Version); err != nil {
		panic(err)
	}
}
