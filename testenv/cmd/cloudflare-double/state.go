package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// state is everything the double knows; it is also the --state-file format.
// All access goes through Server.mu.
type state struct {
	AccountID      string    `json:"account_id"`
	ZoneID         string    `json:"zone_id"`
	ZoneName       string    `json:"zone_name"`
	SharedTunnelID string    `json:"shared_tunnel_id"`
	Tunnels        []*tunnel `json:"tunnels"`
	Records        []*record `json:"records"`
}

// tunnel is a Cloudflare Tunnel (cfd_tunnel) with its connectors and its
// remote configuration.
type tunnel struct {
	ID              string        `json:"id"`
	Name            string        `json:"name"`
	Secret          []byte        `json:"secret"`
	ConfigSrc       string        `json:"config_src"`
	CreatedAt       time.Time     `json:"created_at"`
	DeletedAt       *time.Time    `json:"deleted_at,omitempty"`
	ConnsActiveAt   *time.Time    `json:"conns_active_at,omitempty"`
	ConnsInactiveAt *time.Time    `json:"conns_inactive_at,omitempty"`
	Connectors      []*connector  `json:"connectors"`
	Config          *tunnelConfig `json:"config,omitempty"`
}

// connector is one cloudflared process ("client") holding connections.
type connector struct {
	ID      string        `json:"id"`
	Arch    string        `json:"arch"`
	Version string        `json:"version"`
	RunAt   time.Time     `json:"run_at"`
	Conns   []*connection `json:"conns"`
}

// connection is one connection of a connector to a Cloudflare data center.
type connection struct {
	ID                 string    `json:"id"`
	ColoName           string    `json:"colo_name"`
	IsPendingReconnect bool      `json:"is_pending_reconnect"`
	OriginIP           string    `json:"origin_ip"`
	OpenedAt           time.Time `json:"opened_at"`
}

// tunnelConfig is one version of a tunnel's remote configuration; Config is
// the document exactly as the client sent it (compacted).
type tunnelConfig struct {
	Version   int             `json:"version"`
	Config    json.RawMessage `json:"config"`
	Source    string          `json:"source"`
	CreatedAt time.Time       `json:"created_at"`
}

// record is a DNS record of the zone; Name is always the FQDN.
type record struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Name       string    `json:"name"`
	Content    string    `json:"content"`
	Proxied    bool      `json:"proxied"`
	TTL        int       `json:"ttl"`
	Priority   *int      `json:"priority,omitempty"`
	Comment    *string   `json:"comment,omitempty"`
	Tags       []string  `json:"tags"`
	CreatedOn  time.Time `json:"created_on"`
	ModifiedOn time.Time `json:"modified_on"`
}

// findTunnel returns the tunnel with that id (deleted ones too), or nil.
func (st *state) findTunnel(id string) *tunnel {
	for _, t := range st.Tunnels {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// findRecord returns the record with that id, or nil.
func (st *state) findRecord(id string) *record {
	for _, r := range st.Records {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// activeConns counts connections that serve traffic (not pending reconnect)
// and those pending reconnect.
func (t *tunnel) activeConns() (active, pending int) {
	for _, c := range t.Connectors {
		for _, conn := range c.Conns {
			if conn.IsPendingReconnect {
				pending++
			} else {
				active++
			}
		}
	}
	return active, pending
}

// status is Cloudflare's tunnel status: inactive (never connected), healthy
// (serving, no failed connection), degraded (serving, but some connection is
// pending reconnect) or down (was connected, serves nothing now).
func (t *tunnel) status() string {
	active, pending := t.activeConns()
	switch {
	case active > 0 && pending == 0:
		return "healthy"
	case active > 0:
		return "degraded"
	case t.ConnsActiveAt == nil:
		return "inactive"
	default:
		return "down"
	}
}

// touchConns updates conns_active_at / conns_inactive_at after a change of
// the tunnel's connections.
func (t *tunnel) touchConns(now time.Time) {
	active, _ := t.activeConns()
	switch {
	case active > 0 && (t.ConnsInactiveAt != nil || t.ConnsActiveAt == nil):
		t.ConnsActiveAt, t.ConnsInactiveAt = &now, nil
	case active == 0 && t.ConnsInactiveAt == nil:
		t.ConnsInactiveAt = &now
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// newHexID returns a random 32-hex-digit id, the format of Cloudflare's
// account, zone and record ids.
func newHexID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// saveState writes st to path atomically (temporary file + rename).
func saveState(path string, st *state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadState reads a state file; a missing file is (nil, nil).
func loadState(path string) (*state, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}
