// controllers.go runs the real kube-controller-manager (k8s.io/kubernetes
// cmd/kube-controller-manager/app) in process: namespace, deployment,
// replicaset, statefulset, job, resourcequota, garbage collector,
// serviceaccount(-token), endpoints/endpointslice, PV binder and the rest of
// the default controller set. Cloud controllers are off (no cloud provider).
package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// controllerManagerArgs returns the kube-controller-manager flags.
func controllerManagerArgs(kubeconfig string, pki pkiFiles) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--secure-port=0", // no metrics/healthz endpoint needed
		"--leader-elect=false",
		"--controllers=*",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + pki.ServiceAccount,
		"--root-ca-file=" + pki.CACert,
		"--cluster-signing-cert-file=" + pki.CACert,
		"--cluster-signing-key-file=" + pki.CAKey,
		"--service-cluster-ip-range=" + serviceClusterIPRange,
		"--allocate-node-cidrs=false",
		"--concurrent-gc-syncs=5",
	}
}

// runControllerManager parses args like the kube-controller-manager command
// and runs it until ctx is cancelled.
func runControllerManager(ctx context.Context, args []string) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	known, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	named := s.Flags(known, disabled, aliases)
	s.ParsedFlags = &named
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kube-controller-manager flags: %w", err)
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	c, err := s.Config(ctx, known, disabled, aliases)
	if err != nil {
		return err
	}
	return kcmapp.Run(ctx, c.Complete())
}
