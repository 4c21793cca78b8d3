// apiserver.go runs the real kube-apiserver (k8s.io/kubernetes
// cmd/kube-apiserver/app) in process, configured through its own command-line
// flags exactly as the standalone binary would be.
package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

const (
	serviceClusterIPRange = "10.96.0.0/16"
	serviceAccountIssuer  = "https://kubernetes.default.svc.cluster.local"
)

// admissionPlugins are enabled on top of the upstream default set (which
// already holds NamespaceLifecycle, LimitRanger, ServiceAccount,
// DefaultStorageClass, PodSecurity, ResourceQuota, the webhooks, ...); listing
// them makes the intent explicit and survives changes of the defaults.
var admissionPlugins = []string{
	"NamespaceLifecycle", "LimitRanger", "ServiceAccount", "NodeRestriction",
	"DefaultStorageClass", "DefaultTolerationSeconds", "StorageObjectInUseProtection",
	"PersistentVolumeClaimResize", "Priority", "RuntimeClass", "PodSecurity",
	"MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "ValidatingAdmissionWebhook",
	"ResourceQuota",
}

// apiserverArgs returns the kube-apiserver flags for this cluster.
func apiserverArgs(cfg config, etcdURL string, pki pkiFiles) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", cfg.Port),
		"--cert-dir=" + pki.Dir,
		"--tls-cert-file=" + pki.ServingCert,
		"--tls-private-key-file=" + pki.ServingKey,
		"--client-ca-file=" + pki.CACert,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=" + strings.Join(admissionPlugins, ","),
		"--allow-privileged=true", // PodSecurity, not this flag, decides per namespace
		"--service-cluster-ip-range=" + serviceClusterIPRange,
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + pki.ServiceAccount,
		"--service-account-signing-key-file=" + pki.ServiceAccount,
		// The only endpoint would be 127.0.0.1, which Endpoints validation rejects.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--enable-priority-and-fairness=false",
		"--event-ttl=1h",
	}
}

// apiServer is a prepared kube-apiserver.
type apiServer struct {
	run      func(ctx context.Context) error
	Loopback *rest.Config
}

// newAPIServer parses args like the kube-apiserver command and builds the
// server chain (without serving yet).
func newAPIServer(ctx context.Context, args []string) (*apiServer, error) {
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("kube-apiserver flags: %w", err)
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})

	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, utilerrors.NewAggregate(errs)
	}
	c, err := apiserverapp.NewConfig(completed)
	if err != nil {
		return nil, err
	}
	cc, err := c.Complete()
	if err != nil {
		return nil, err
	}
	server, err := apiserverapp.CreateServerChain(cc)
	if err != nil {
		return nil, err
	}
	loopback := rest.CopyConfig(server.GenericAPIServer.LoopbackClientConfig)
	return &apiServer{
		Loopback: loopback,
		run: func(ctx context.Context) error {
			prepared, err := server.PrepareRun()
			if err != nil {
				return err
			}
			return prepared.Run(ctx)
		},
	}, nil
}

// Run serves until ctx is cancelled.
func (a *apiServer) Run(ctx context.Context) error { return a.run(ctx) }
