// Command cloudflare-double is a test double of Cloudflare's API v4 for the
// parts the operator uses: Cloudflare Tunnels (cfd_tunnel: create, list,
// get, rename, delete, token, connections, remote configuration) and the DNS
// records of one zone. It keeps everything in memory (optionally mirrored to
// a state file), checks "Authorization: Bearer <token>", answers with
// Cloudflare's envelope and error codes, and offers test-control endpoints
// under /__double/ (fault injection, simulated connections, a request log,
// reset). It is a test environment, not a proxy to Cloudflare.
//
// Usage:
//
//	cloudflare-double --listen 127.0.0.1:8788 --token-file FILE \
//	    [--account-id ID] [--zone-id ID] [--zone-name paas.test] \
//	    [--shared-tunnel-name paas-shared] [--state-file FILE] [--info-file FILE]
//
// The API is served under /client/v4 (as https://api.cloudflare.com/client/v4).
// At start one shared, remotely configured tunnel exists whose configuration
// already routes foreign.<zone> for someone else. The ids in use are printed
// on one line of stdout and, with --info-file, written as JSON once the
// server listens (the file appearing means the API is up). SIGTERM/SIGINT
// stop it; the exit code is then 0.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetPrefix("cloudflare-double: ")
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cloudflare-double:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	options
	Listen    string
	TokenFile string
	InfoFile  string
}

// parseFlags reads the command line; the token comes from --token or, to
// keep it off the process list, --token-file.
func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("cloudflare-double", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8788", "address to listen on (port 0: any free port)")
	fs.StringVar(&cfg.Token, "token", "", "API token clients must send as \"Authorization: Bearer <token>\"")
	fs.StringVar(&cfg.TokenFile, "token-file", "", "file holding the API token (instead of --token)")
	fs.StringVar(&cfg.AccountID, "account-id", "", "account id (default: random 32 hex digits)")
	fs.StringVar(&cfg.ZoneID, "zone-id", "", "zone id (default: random 32 hex digits)")
	fs.StringVar(&cfg.ZoneName, "zone-name", "paas.test", "zone name (the apex)")
	fs.StringVar(&cfg.SharedTunnelName, "shared-tunnel-name", "paas-shared", "name of the shared tunnel created at start")
	fs.BoolVar(&cfg.SharedTunnelConnected, "shared-tunnel-connected", true, "give the shared tunnel one simulated healthy connection")
	fs.StringVar(&cfg.StateFile, "state-file", "", "keep the state in this JSON file (loaded at start when it exists)")
	fs.StringVar(&cfg.InfoFile, "info-file", "", "write the ids and base URLs in use to this JSON file once listening")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.TokenFile != "" {
		data, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return cfg, err
		}
		cfg.Token = strings.TrimSpace(string(data))
	}
	if cfg.Token == "" {
		return cfg, errors.New("--token or --token-file is required")
	}
	cfg.ZoneName = strings.TrimSuffix(strings.ToLower(cfg.ZoneName), ".")
	if validateDNSName(cfg.ZoneName) != nil || !strings.Contains(cfg.ZoneName, ".") {
		return cfg, fmt.Errorf("--zone-name %q is not a valid zone name", cfg.ZoneName)
	}
	return cfg, nil
}

// run serves until SIGTERM/SIGINT.
func run(cfg config) error {
	st, err := startState(&cfg.options)
	if err != nil {
		return err
	}
	srv := NewServer(cfg.options, st)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	inf := srv.info("http://" + ln.Addr().String())
	if err := writeInfo(cfg.InfoFile, inf); err != nil {
		ln.Close()
		return err
	}
	fmt.Printf("cloudflare-double listening: api_base=%s control_base=%s account_id=%s zone_id=%s zone_name=%s shared_tunnel_id=%s\n",
		inf.APIBase, inf.ControlBase, inf.AccountID, inf.ZoneID, inf.ZoneName, inf.SharedTunnelID)

	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Print("stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		hs.Close() // slow (delayed) answers must not hold the exit
	}
	return nil
}

// startState loads --state-file when it exists and belongs to the same
// account and zone; otherwise it builds the initial state. Missing ids are
// taken from the state file or made up.
func startState(opts *options) (*state, error) {
	var st *state
	if opts.StateFile != "" {
		loaded, err := loadState(opts.StateFile)
		if err != nil {
			return nil, err
		}
		st = loaded
	}
	if st != nil && compatible(st, opts) {
		opts.AccountID, opts.ZoneID = st.AccountID, st.ZoneID
		if st.findTunnel(st.SharedTunnelID) != nil {
			log.Printf("state loaded from %s", opts.StateFile)
			return st, nil
		}
	}
	if opts.AccountID == "" {
		opts.AccountID = newHexID()
	}
	if opts.ZoneID == "" {
		opts.ZoneID = newHexID()
	}
	st = initialState(*opts, "", time.Now().UTC().Truncate(time.Microsecond))
	if opts.StateFile != "" {
		if err := saveState(opts.StateFile, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// compatible tells whether a loaded state fits the command line (ids given
// on the command line must match; the zone name must match).
func compatible(st *state, opts *options) bool {
	return st.ZoneName == opts.ZoneName &&
		(opts.AccountID == "" || opts.AccountID == st.AccountID) &&
		(opts.ZoneID == "" || opts.ZoneID == st.ZoneID)
}

// writeInfo writes inf as JSON to path (atomically), if path is set.
func writeInfo(path string, inf info) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(inf, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
