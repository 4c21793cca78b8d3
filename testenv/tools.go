//go:build tools

// Package tools pins build-only dependencies (kubectl) so that go.sum covers them.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubectl"
)
