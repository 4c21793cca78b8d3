package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Error codes of the tunnel API. 1013 is Cloudflare's documented duplicate
// name; the others are the double's best guess.
const (
	codeTunnelBadRequest = 1001
	codeTunnelNotFound   = 1003
	codeTunnelNameTaken  = 1013
	codeTunnelHasConns   = 1022
	codeTunnelConfigBad  = 1055
)

const (
	tunnelDefaultPerPage  = 20
	tunnelMaxPerPage      = 1000
	minTunnelSecretLength = 32
)

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// tunnelView is a tunnel as the API shows it.
type tunnelView struct {
	ID              string           `json:"id"`
	AccountTag      string           `json:"account_tag"`
	CreatedAt       time.Time        `json:"created_at"`
	DeletedAt       *time.Time       `json:"deleted_at"`
	Name            string           `json:"name"`
	Connections     []connectionView `json:"connections"`
	ConnsActiveAt   *time.Time       `json:"conns_active_at"`
	ConnsInactiveAt *time.Time       `json:"conns_inactive_at"`
	TunType         string           `json:"tun_type"`
	Metadata        map[string]any   `json:"metadata"`
	Status          string           `json:"status"`
	RemoteConfig    bool             `json:"remote_config"`
	ConfigSrc       string           `json:"config_src"`
	CredentialsFile *credentialsFile `json:"credentials_file,omitempty"`
	Token           string           `json:"token,omitempty"`
}

// credentialsFile is what cloudflared keeps for a locally managed tunnel;
// only the create answer carries it.
type credentialsFile struct {
	AccountTag   string `json:"AccountTag"`
	TunnelID     string `json:"TunnelID"`
	TunnelName   string `json:"TunnelName"`
	TunnelSecret string `json:"TunnelSecret"`
}

// connectionView is one connection (the tunnel's "connections" and a
// connector's "conns").
type connectionView struct {
	ID                 string    `json:"id"`
	ClientID           string    `json:"client_id"`
	ClientVersion      string    `json:"client_version"`
	ColoName           string    `json:"colo_name"`
	IsPendingReconnect bool      `json:"is_pending_reconnect"`
	OpenedAt           time.Time `json:"opened_at"`
	OriginIP           string    `json:"origin_ip"`
	UUID               string    `json:"uuid"`
}

// connectorView is one cloudflared client, as GET .../connections lists it.
type connectorView struct {
	ID            string           `json:"id"`
	Arch          string           `json:"arch"`
	ConfigVersion int              `json:"config_version"`
	Conns         []connectionView `json:"conns"`
	Features      []string         `json:"features"`
	RunAt         time.Time        `json:"run_at"`
	Version       string           `json:"version"`
}

func connView(c *connector, conn *connection) connectionView {
	return connectionView{
		ID: conn.ID, ClientID: c.ID, ClientVersion: c.Version, ColoName: conn.ColoName,
		IsPendingReconnect: conn.IsPendingReconnect, OpenedAt: conn.OpenedAt, OriginIP: conn.OriginIP, UUID: conn.ID,
	}
}

// view renders t for the API.
func (s *Server) view(t *tunnel) tunnelView {
	conns := []connectionView{}
	for _, c := range t.Connectors {
		for _, conn := range c.Conns {
			conns = append(conns, connView(c, conn))
		}
	}
	return tunnelView{
		ID: t.ID, AccountTag: s.opts.AccountID, CreatedAt: t.CreatedAt, DeletedAt: t.DeletedAt, Name: t.Name,
		Connections: conns, ConnsActiveAt: t.ConnsActiveAt, ConnsInactiveAt: t.ConnsInactiveAt,
		TunType: "cfd_tunnel", Metadata: map[string]any{}, Status: t.status(),
		RemoteConfig: t.ConfigSrc == "cloudflare", ConfigSrc: t.ConfigSrc,
	}
}

// tunnelToken is what `cloudflared tunnel run --token` takes: base64 of
// {"a": account, "t": tunnel id, "s": base64 secret}.
func (s *Server) tunnelTokenOf(t *tunnel) string {
	doc, _ := json.Marshal(map[string]string{
		"a": s.opts.AccountID, "t": t.ID, "s": base64.StdEncoding.EncodeToString(t.Secret),
	})
	return base64.StdEncoding.EncodeToString(doc)
}

// lookupTunnel finds the tunnel of the request path; deleted ones count
// only when allowDeleted. Callers hold s.mu.
func (s *Server) lookupTunnel(r *http.Request, allowDeleted bool) (*tunnel, error) {
	id := r.PathValue("tunnel")
	if !uuidRE.MatchString(id) {
		return nil, newError(http.StatusBadRequest, codeTunnelBadRequest, "tunnel_id must be a UUID")
	}
	t := s.st.findTunnel(strings.ToLower(id))
	if t == nil || (t.DeletedAt != nil && !allowDeleted) {
		return nil, newError(http.StatusNotFound, codeTunnelNotFound, "Tunnel not found")
	}
	return t, nil
}

// nameTaken tells whether a live tunnel other than except is called name.
func (st *state) nameTaken(name, except string) bool {
	for _, t := range st.Tunnels {
		if t.DeletedAt == nil && t.Name == name && t.ID != except {
			return true
		}
	}
	return false
}

// decodeSecret checks a tunnel_secret: base64 of at least 32 bytes.
func decodeSecret(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil || len(b) < minTunnelSecretLength {
		return nil, newError(http.StatusBadRequest, codeTunnelBadRequest,
			"tunnel_secret must be a base64 encoded string of at least %d bytes", minTunnelSecretLength)
	}
	return b, nil
}

// tunnelRequest is the body of POST and PATCH .../cfd_tunnel.
type tunnelRequest struct {
	Name         *string `json:"name"`
	TunnelSecret *string `json:"tunnel_secret"`
	ConfigSrc    *string `json:"config_src"`
}

// createTunnel answers POST /accounts/{acc}/cfd_tunnel.
func (s *Server) createTunnel(r *http.Request) (reply, error) {
	var req tunnelRequest
	if err := decodeBody(r, &req, codeTunnelBadRequest); err != nil {
		return reply{}, err
	}
	if req.Name == nil || strings.TrimSpace(*req.Name) == "" {
		return reply{}, newError(http.StatusBadRequest, codeTunnelBadRequest, "name is required")
	}
	src := "local"
	if req.ConfigSrc != nil {
		src = *req.ConfigSrc
	}
	if src != "local" && src != "cloudflare" {
		return reply{}, newError(http.StatusBadRequest, codeTunnelBadRequest, "config_src must be \"local\" or \"cloudflare\"")
	}
	secret := randomBytes(minTunnelSecretLength)
	if req.TunnelSecret != nil {
		var err error
		if secret, err = decodeSecret(*req.TunnelSecret); err != nil {
			return reply{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.nameTaken(*req.Name, "") {
		return reply{}, newError(http.StatusConflict, codeTunnelNameTaken,
			"You already have a tunnel with this name. Delete the existing tunnel, or choose a different name for your new tunnel")
	}
	now := s.now()
	t := &tunnel{ID: newUUID(), Name: *req.Name, Secret: secret, ConfigSrc: src, CreatedAt: now, ConnsInactiveAt: &now}
	s.st.Tunnels = append(s.st.Tunnels, t)
	s.commit()
	v := s.view(t)
	v.CredentialsFile = &credentialsFile{
		AccountTag: s.opts.AccountID, TunnelID: t.ID, TunnelName: t.Name,
		TunnelSecret: base64.StdEncoding.EncodeToString(secret),
	}
	v.Token = s.tunnelTokenOf(t)
	return reply{result: v}, nil
}

// listTunnels answers GET /accounts/{acc}/cfd_tunnel. Without is_deleted only
// live tunnels are listed (Cloudflare's default since December 2025).
func (s *Server) listTunnels(r *http.Request) (reply, error) {
	q := r.URL.Query()
	deleted, _, err := boolParam(q, "is_deleted")
	if err != nil {
		return reply{}, err
	}
	page, perPage, err := pageParams(q, tunnelDefaultPerPage, tunnelMaxPerPage)
	if err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	views := []tunnelView{}
	for _, t := range s.st.Tunnels {
		if (t.DeletedAt != nil) != deleted || !tunnelMatches(t, q) {
			continue
		}
		views = append(views, s.view(t))
	}
	out, info := paginate(views, page, perPage)
	return reply{result: out, info: info}, nil
}

// tunnelMatches applies the list filters name, uuid, include_prefix,
// exclude_prefix and status.
func tunnelMatches(t *tunnel, q url.Values) bool {
	get := q.Get
	switch {
	case get("name") != "" && t.Name != get("name"),
		get("uuid") != "" && !strings.EqualFold(t.ID, get("uuid")),
		get("include_prefix") != "" && !strings.HasPrefix(t.Name, get("include_prefix")),
		get("exclude_prefix") != "" && strings.HasPrefix(t.Name, get("exclude_prefix")),
		get("status") != "" && t.status() != get("status"):
		return false
	}
	return true
}

// getTunnel answers GET .../cfd_tunnel/{id}; deleted tunnels are still shown.
func (s *Server) getTunnel(r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTunnel(r, true)
	if err != nil {
		return reply{}, err
	}
	return reply{result: s.view(t)}, nil
}

// updateTunnel answers PATCH .../cfd_tunnel/{id} (name, tunnel_secret).
func (s *Server) updateTunnel(r *http.Request) (reply, error) {
	var req tunnelRequest
	if err := decodeBody(r, &req, codeTunnelBadRequest); err != nil {
		return reply{}, err
	}
	var secret []byte
	if req.TunnelSecret != nil {
		var err error
		if secret, err = decodeSecret(*req.TunnelSecret); err != nil {
			return reply{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTunnel(r, false)
	if err != nil {
		return reply{}, err
	}
	if req.Name != nil {
		if strings.TrimSpace(*req.Name) == "" {
			return reply{}, newError(http.StatusBadRequest, codeTunnelBadRequest, "name must not be empty")
		}
		if s.st.nameTaken(*req.Name, t.ID) {
			return reply{}, newError(http.StatusConflict, codeTunnelNameTaken,
				"You already have a tunnel with this name. Delete the existing tunnel, or choose a different name for your new tunnel")
		}
		t.Name = *req.Name
	}
	if secret != nil {
		t.Secret = secret
	}
	s.commit()
	return reply{result: s.view(t)}, nil
}

// deleteTunnel answers DELETE .../cfd_tunnel/{id}[?cascade=true]. A tunnel
// with active connections is refused unless cascade; the deleted tunnel is
// answered with deleted_at set.
func (s *Server) deleteTunnel(r *http.Request) (reply, error) {
	cascade, _, err := boolParam(r.URL.Query(), "cascade")
	if err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTunnel(r, false)
	if err != nil {
		return reply{}, err
	}
	if active, _ := t.activeConns(); active > 0 && !cascade {
		return reply{}, newError(http.StatusBadRequest, codeTunnelHasConns,
			"Cannot delete tunnel %s because it has active connections. Stop cloudflared or delete with cascade=true", t.ID)
	}
	now := s.now()
	removeConnectors(t, "", now)
	t.DeletedAt = &now
	s.commit()
	return reply{result: s.view(t)}, nil
}

// tunnelToken answers GET .../cfd_tunnel/{id}/token with the token string.
func (s *Server) tunnelToken(r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTunnel(r, false)
	if err != nil {
		return reply{}, err
	}
	return reply{result: s.tunnelTokenOf(t)}, nil
}

// listConnections answers GET .../cfd_tunnel/{id}/connections: one entry per
// connector (cloudflared client) with its conns.
func (s *Server) listConnections(r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTunnel(r, true)
	if err != nil {
		return reply{}, err
	}
	version := 0
	if t.Config != nil {
		version = t.Config.Version
	}
	out := []connectorView{}
	for _, c := range t.Connectors {
		cv := connectorView{
			ID: c.ID, Arch: c.Arch, ConfigVersion: version, Conns: []connectionView{},
			Features: []string{}, RunAt: c.RunAt, Version: c.Version,
		}
		for _, conn := range c.Conns {
			cv.Conns = append(cv.Conns, connView(c, conn))
		}
		out = append(out, cv)
	}
	page, info := paginate(out, 1, max(len(out), 1))
	return reply{result: page, info: info}, nil
}

// cleanupConnections answers DELETE .../cfd_tunnel/{id}/connections
// [?client_id=]: drops the connector(s) whatever their state.
func (s *Server) cleanupConnections(r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTunnel(r, false)
	if err != nil {
		return reply{}, err
	}
	removeConnectors(t, r.URL.Query().Get("client_id"), s.now())
	s.commit()
	return reply{result: nil}, nil
}
