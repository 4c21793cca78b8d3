// Command localkube runs a small but real Kubernetes control plane in one
// process: embedded etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler from k8s.io/kubernetes, plus a simulated kubelet (one Ready
// node whose pods "run" without containers) and a simulated volume
// provisioner. It is a test environment, not a cluster for workloads.
//
// Usage:
//
//	localkube --data-dir DIR [--port 6443] [-v 0]
//
// <data-dir>/admin.kubeconfig (identity in group system:masters) is removed at
// start and written once the apiserver answers /readyz and the default
// StorageClass exists; its appearance means the API is usable. The node turns
// Ready a moment later.
// SIGTERM/SIGINT stop everything; the exit code is then 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/grpclog"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	_ "paas-operator/testenv/internal/kubeversion" // report v1.36.3, not v0.0.0-master
)

// config is the command line of localkube.
type config struct {
	DataDir string
	Port    int
}

// Shutdown budget: components, then etcd. Callers commonly escalate to
// SIGKILL after 5s, so the total stays below that.
const (
	componentsGrace = 3 * time.Second
	etcdGrace       = 1 * time.Second
)

func main() {
	var cfg config
	klog.InitFlags(flag.CommandLine)
	flag.StringVar(&cfg.DataDir, "data-dir", "", "directory for etcd data, certificates and admin.kubeconfig (required; created)")
	flag.IntVar(&cfg.Port, "port", 6443, "secure port of the kube-apiserver on 127.0.0.1")
	_ = flag.Set("v", "0")
	_ = flag.Set("logtostderr", "true")
	flag.Parse()
	quietGRPC()
	if cfg.DataDir == "" {
		fmt.Fprintln(os.Stderr, "localkube: --data-dir is required")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		klog.ErrorS(err, "localkube failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

// quietGRPC drops the etcd client's gRPC warnings (connection churn the
// apiserver's storage health checks cause routinely) unless -v >= 2; errors
// still reach stderr.
func quietGRPC() {
	if klog.V(2).Enabled() {
		return
	}
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
}

func run(cfg config) error {
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	// Its appearance is the "API is up" signal: never leave a stale one.
	if err := os.Remove(kubeconfig); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	signals, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	ctx, cancel := context.WithCancelCause(signals)
	defer cancel(nil)
	begin := time.Now()

	pki, err := ensurePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return err
	}
	etcd, err := startEtcd(ctx, filepath.Join(dir, "etcd"))
	if err != nil {
		return err
	}
	defer stopWithin(etcdGrace, "etcd", etcd.Stop)
	klog.InfoS("localkube: etcd ready", "url", etcd.ClientURL, "after", time.Since(begin).Round(time.Millisecond))

	api, err := newAPIServer(ctx, apiserverArgs(cfg, etcd.ClientURL, pki))
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	var wg sync.WaitGroup
	component := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn(ctx)
			if ctx.Err() == nil {
				if err == nil {
					err = errors.New("exited")
				}
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	component("kube-apiserver", api.Run)

	client, err := kubernetes.NewForConfig(adminRESTConfig(pki, cfg.Port))
	if err != nil {
		return stopAll(ctx, cancel, &wg, err)
	}
	if err := waitReady(ctx, client); err != nil {
		return stopAll(ctx, cancel, &wg, err)
	}
	// Before the kubeconfig appears, so every PVC gets the default class.
	if err := ensureDefaultStorageClass(ctx, client); err != nil {
		return stopAll(ctx, cancel, &wg, fmt.Errorf("default storage class: %w", err))
	}
	if err := writeAdminKubeconfig(kubeconfig, pki, cfg.Port); err != nil {
		return stopAll(ctx, cancel, &wg, err)
	}
	klog.InfoS("localkube: kube-apiserver ready", "kubeconfig", kubeconfig, "after", time.Since(begin).Round(time.Millisecond))

	component("kube-controller-manager", func(ctx context.Context) error {
		return runControllerManager(ctx, controllerManagerArgs(kubeconfig, pki))
	})
	component("kube-scheduler", func(ctx context.Context) error {
		return runScheduler(ctx, schedulerArgs(kubeconfig))
	})
	kubeletSrv, err := newKubeletServer(pki.ServingCert, pki.ServingKey)
	if err != nil {
		return stopAll(ctx, cancel, &wg, fmt.Errorf("kubelet server: %w", err))
	}
	component("kubelet-server", kubeletSrv.Run)
	component("kubelet-sim", newKubeletSim(client, kubeletSrv.Port()).Run)
	component("provisioner", (&provisioner{client: client, rootDir: filepath.Join(dir, "volumes")}).Run)
	klog.InfoS("localkube: all components started", "after", time.Since(begin).Round(time.Millisecond))

	<-ctx.Done()
	return stopAll(ctx, cancel, &wg, nil)
}

// stopAll cancels every component and waits (bounded) for them. A signal is a
// clean stop; a failing component is reported as the error.
func stopAll(ctx context.Context, cancel context.CancelCauseFunc, wg *sync.WaitGroup, err error) error {
	if err == nil {
		err = context.Cause(ctx)
	}
	cancel(err)
	if errors.Is(err, context.Canceled) {
		err = nil // SIGINT/SIGTERM
		klog.InfoS("localkube: shutting down")
	}
	stopWithin(componentsGrace, "components", wg.Wait)
	return err
}

// stopWithin runs stop but gives up waiting after grace; the process is about
// to exit, so whatever is still running is cut off.
func stopWithin(grace time.Duration, what string, stop func()) {
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		klog.InfoS("localkube: still stopping, exiting anyway", "what", what)
	}
}

// adminRESTConfig is the client config of the admin identity.
func adminRESTConfig(pki pkiFiles, port int) *rest.Config {
	return &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", port),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: pki.CACert, CertFile: pki.AdminCert, KeyFile: pki.AdminKey,
		},
		QPS:   100,
		Burst: 200,
	}
}

// waitReady polls the apiserver's /readyz until it answers ok.
func waitReady(ctx context.Context, client kubernetes.Interface) error {
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(reqCtx)
		cancel()
		if err == nil && string(body) == "ok" {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-deadline:
			return fmt.Errorf("kube-apiserver not ready after 2m: %v", err)
		case <-tick.C:
		}
	}
}
