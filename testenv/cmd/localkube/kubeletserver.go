// kubeletserver.go serves the small part of the kubelet API that the
// apiserver proxies to (`kubectl logs`, `helm test --logs`): container logs
// are a fixed line, since simulated containers produce no output. Exec,
// attach and port-forward are not supported. It listens on loopback only; the
// node advertises it through its Hostname address "localhost".
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

// kubeletServer is the simulated kubelet's HTTPS endpoint.
type kubeletServer struct {
	listener net.Listener
	srv      *http.Server
}

// newKubeletServer listens on a free loopback port with the given certificate.
func newKubeletServer(certFile, keyFile string) (*kubeletServer, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/", containerLogs)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "localkube: the simulated kubelet does not support "+r.URL.Path, http.StatusNotImplemented)
	})
	return &kubeletServer{listener: l, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Port is the port the server listens on.
func (s *kubeletServer) Port() int { return s.listener.Addr().(*net.TCPAddr).Port }

// Run serves until ctx is cancelled.
func (s *kubeletServer) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.srv.Shutdown(shutdownCtx)
	}()
	if err := s.srv.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// containerLogs answers /containerLogs/{namespace}/{pod}/{container}.
func containerLogs(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 {
		http.NotFound(w, r)
		return
	}
	klog.V(2).InfoS("kubelet-sim: logs requested", "namespace", parts[0], "pod", parts[1], "container", parts[2])
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "localkube: container %q of pod %s/%s is simulated and writes no logs\n", parts[2], parts[0], parts[1])
}
