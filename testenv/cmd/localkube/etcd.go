// etcd.go runs a single-member etcd server in process (go.etcd.io/etcd
// embed), listening on free loopback ports, with its data under the data dir.
package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/klog/v2"
)

// etcdServer is a running embedded etcd.
type etcdServer struct {
	e         *embed.Etcd
	ClientURL string
}

// startEtcd starts etcd with its data in dir and waits until it serves.
func startEtcd(ctx context.Context, dir string) (*etcdServer, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}

	cfg := embed.NewConfig()
	cfg.Name = "localkube"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	// etcd logs every closed listener as an error on shutdown; below -v=2
	// only fatal problems are logged (storage errors reach the apiserver's
	// clients and log anyway).
	cfg.LogLevel = "fatal"
	if klog.V(2).Enabled() {
		cfg.LogLevel = "warn"
	}
	// A throwaway test cluster: trade durability for speed on slow disks.
	cfg.UnsafeNoFsync = true

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed: %w", err)
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd not ready after 30s")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &etcdServer{e: e, ClientURL: clientURL.String()}, nil
}

// Stop closes etcd, waiting for in-flight requests to finish.
func (s *etcdServer) Stop() { s.e.Close() }

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
