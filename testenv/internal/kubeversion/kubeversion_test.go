package kubeversion

import (
	"testing"

	clientgoversion "k8s.io/client-go/pkg/version"
	"k8s.io/component-base/version"
)

func TestVersionStamped(t *testing.T) {
	for name, got := range map[string]string{
		"component-base": version.Get().GitVersion,
		"client-go":      clientgoversion.Get().GitVersion,
	} {
		if got != Version {
			t.Errorf("%s version = %q, want %q", name, got, Version)
		}
	}
	if m := version.Get().Major; m != Major {
		t.Errorf("major = %q", m)
	}
}
