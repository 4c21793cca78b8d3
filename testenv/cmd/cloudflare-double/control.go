package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The test-control endpoints under /__double/ need no authentication and
// answer plain JSON (errors as {"error": "..."}). They are not Cloudflare's.

// fault makes the next Count API requests matching Method and PathRegex fail
// with Status (0: answer normally) after DelayMS.
type fault struct {
	ID                int    `json:"id"`
	Method            string `json:"method,omitempty"`
	PathRegex         string `json:"path_regex"`
	Status            int    `json:"status"`
	Count             int    `json:"count"`
	RetryAfterSeconds int    `json:"retry_after_seconds,omitempty"`
	DelayMS           int    `json:"delay_ms,omitempty"`

	re *regexp.Regexp
}

// requestEntry is one line of the request log. Path is relative to the API
// base (/client/v4), the same string fault path_regex is matched against.
type requestEntry struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Query      string    `json:"query,omitempty"`
	Status     int       `json:"status"`
	DurationMS float64   `json:"duration_ms"`
	Fault      bool      `json:"fault,omitempty"`
}

// maxLoggedRequests bounds the request log (oldest entries go first).
const maxLoggedRequests = 10000

// controlRoutes wires /__double/*.
func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+controlPrefix+"/info", s.handleInfo)
	mux.HandleFunc("GET "+controlPrefix+"/faults", s.handleListFaults)
	mux.HandleFunc("POST "+controlPrefix+"/faults", s.handleAddFault)
	mux.HandleFunc("DELETE "+controlPrefix+"/faults", s.handleClearFaults)
	mux.HandleFunc("POST "+controlPrefix+"/tunnels/{tunnel}/connections", s.handleAddConnection)
	mux.HandleFunc("DELETE "+controlPrefix+"/tunnels/{tunnel}/connections", s.handleRemoveConnections)
	mux.HandleFunc("PATCH "+controlPrefix+"/tunnels/{tunnel}/connections/{conn}", s.handlePatchConnection)
	mux.HandleFunc("GET "+controlPrefix+"/requests", s.handleRequests)
	mux.HandleFunc("POST "+controlPrefix+"/reset", s.handleReset)
	mux.HandleFunc(controlPrefix+"/", func(w http.ResponseWriter, r *http.Request) {
		controlError(w, http.StatusNotFound, "no such control endpoint: %s %s", r.Method, r.URL.Path)
	})
}

// controlError answers {"error": ...}.
func controlError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// bodyError is the message of a decodeBody error.
func bodyError(err error) string {
	if ae, ok := err.(*apiError); ok {
		return ae.Message
	}
	return err.Error()
}

// info is what --info-file and GET /__double/info tell (nothing secret).
type info struct {
	APIBase          string `json:"api_base"`
	ControlBase      string `json:"control_base"`
	AccountID        string `json:"account_id"`
	ZoneID           string `json:"zone_id"`
	ZoneName         string `json:"zone_name"`
	SharedTunnelID   string `json:"shared_tunnel_id"`
	SharedTunnelName string `json:"shared_tunnel_name"`
}

// info describes the server as reached at base (e.g. http://127.0.0.1:8788).
func (s *Server) info(base string) info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return info{
		APIBase: base + apiPrefix, ControlBase: base + controlPrefix,
		AccountID: s.opts.AccountID, ZoneID: s.opts.ZoneID, ZoneName: s.opts.ZoneName,
		SharedTunnelID: s.st.SharedTunnelID, SharedTunnelName: s.opts.SharedTunnelName,
	}
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.info("http://"+r.Host))
}

// ---------------------------------------------------------------- faults ----

func (s *Server) handleListFaults(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]fault, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, *f)
	}
	writeJSON(w, http.StatusOK, map[string]any{"faults": out})
}

func (s *Server) handleAddFault(w http.ResponseWriter, r *http.Request) {
	var f fault
	if err := decodeBody(r, &f, 0); err != nil {
		controlError(w, http.StatusBadRequest, "%s", bodyError(err))
		return
	}
	if err := f.prepare(); err != nil {
		controlError(w, http.StatusBadRequest, "%v", err)
		return
	}
	s.mu.Lock()
	s.faultSeq++
	f.ID = s.faultSeq
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, f)
}

// prepare validates a fault and fills in defaults.
func (f *fault) prepare() error {
	var err error
	if f.re, err = regexp.Compile(f.PathRegex); err != nil {
		return fmt.Errorf("path_regex: %v", err)
	}
	f.Method = strings.ToUpper(f.Method)
	if f.Count == 0 {
		f.Count = 1
	}
	switch {
	case f.Count < 0:
		return fmt.Errorf("count must be positive")
	case f.Status != 0 && (f.Status < 400 || f.Status > 599):
		return fmt.Errorf("status must be 0 (answer normally, late) or 400-599")
	case f.Status == 0 && f.DelayMS <= 0:
		return fmt.Errorf("status 0 needs delay_ms > 0")
	case f.DelayMS < 0 || f.RetryAfterSeconds < 0:
		return fmt.Errorf("delay_ms and retry_after_seconds must not be negative")
	}
	return nil
}

func (s *Server) handleClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	n := len(s.faults)
	s.faults = nil
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]int{"cleared": n})
}

// takeFault consumes one use of the first fault matching r, if any.
func (s *Server) takeFault(r *http.Request) *fault {
	path := strings.TrimPrefix(r.URL.Path, apiPrefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if (f.Method != "" && f.Method != r.Method) || !f.re.MatchString(path) {
			continue
		}
		f.Count--
		if f.Count <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		taken := *f
		return &taken
	}
	return nil
}

// faulted applies injected faults to API requests, before authentication
// (as an overloaded or failing edge would).
func (s *Server) faulted(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := s.takeFault(r)
		if f == nil {
			next.ServeHTTP(w, r)
			return
		}
		if rec, ok := w.(*statusRecorder); ok {
			rec.fault = true
		}
		if f.DelayMS > 0 {
			select {
			case <-time.After(time.Duration(f.DelayMS) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		if f.Status == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if f.RetryAfterSeconds > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfterSeconds))
		}
		writeError(w, faultError(f.Status))
	})
}

// faultError is the envelope of an injected failure.
func faultError(status int) *apiError {
	if status == http.StatusTooManyRequests {
		return newError(status, 971, "Please wait and consider throttling your request speed")
	}
	return newError(status, status, "Injected fault: %s", http.StatusText(status))
}

// ----------------------------------------------------------- request log ----

// logRequest appends one answered API request to the log.
func (s *Server) logRequest(r *http.Request, status int, took time.Duration, fault bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.requests = append(s.requests, requestEntry{
		Seq: s.seq, Time: s.now(), Method: r.Method,
		Path: strings.TrimPrefix(r.URL.Path, apiPrefix), Query: r.URL.RawQuery,
		Status: status, DurationMS: float64(took.Microseconds()) / 1000, Fault: fault,
	})
	if extra := len(s.requests) - maxLoggedRequests; extra > 0 {
		s.requests = append([]requestEntry(nil), s.requests[extra:]...)
	}
}

// handleRequests answers the log entries with seq > since (default 0), and
// last_seq to pass as the next since.
func (s *Server) handleRequests(w http.ResponseWriter, r *http.Request) {
	since, err := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	if err != nil && r.URL.Query().Get("since") != "" {
		controlError(w, http.StatusBadRequest, "since must be an integer")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []requestEntry{}
	for _, e := range s.requests {
		if e.Seq > since {
			out = append(out, e)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"last_seq": s.seq, "requests": out})
}

// ----------------------------------------------------------- connections ----

// connectionRequest is the body of POST /__double/tunnels/{id}/connections.
type connectionRequest struct {
	OriginIP           string `json:"origin_ip"`
	IsPendingReconnect bool   `json:"is_pending_reconnect"`
	ColoName           string `json:"colo_name"`
	ClientID           string `json:"client_id"`
	Version            string `json:"version"`
}

func (s *Server) handleAddConnection(w http.ResponseWriter, r *http.Request) {
	req := connectionRequest{OriginIP: "192.0.2.10", ColoName: "dev01", Version: "2025.1.0"}
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req, 0); err != nil {
			controlError(w, http.StatusBadRequest, "%s", bodyError(err))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.st.findTunnel(r.PathValue("tunnel"))
	if t == nil || t.DeletedAt != nil {
		controlError(w, http.StatusNotFound, "no such tunnel: %s", r.PathValue("tunnel"))
		return
	}
	c, conn := addConnection(t, req, s.now())
	s.commit()
	writeJSON(w, http.StatusOK, connView(c, conn))
}

// addConnection adds a connection to t, on the connector req.ClientID
// (created if new) or on a new connector.
func addConnection(t *tunnel, req connectionRequest, now time.Time) (*connector, *connection) {
	var c *connector
	for _, existing := range t.Connectors {
		if req.ClientID != "" && existing.ID == req.ClientID {
			c = existing
		}
	}
	if c == nil {
		id := req.ClientID
		if id == "" {
			id = newUUID()
		}
		c = &connector{ID: id, Arch: "linux_amd64", Version: req.Version, RunAt: now}
		t.Connectors = append(t.Connectors, c)
	}
	conn := &connection{
		ID: newUUID(), ColoName: req.ColoName, IsPendingReconnect: req.IsPendingReconnect,
		OriginIP: req.OriginIP, OpenedAt: now,
	}
	c.Conns = append(c.Conns, conn)
	t.touchConns(now)
	return c, conn
}

func (s *Server) handleRemoveConnections(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.st.findTunnel(r.PathValue("tunnel"))
	if t == nil {
		controlError(w, http.StatusNotFound, "no such tunnel: %s", r.PathValue("tunnel"))
		return
	}
	n := removeConnectors(t, "", s.now())
	s.commit()
	writeJSON(w, http.StatusOK, map[string]any{"removed": n, "status": t.status()})
}

// handlePatchConnection flips is_pending_reconnect of one connection, to
// simulate a connection failing or recovering.
func (s *Server) handlePatchConnection(w http.ResponseWriter, r *http.Request) {
	var req struct {
		IsPendingReconnect *bool `json:"is_pending_reconnect"`
	}
	if err := decodeBody(r, &req, 0); err != nil || req.IsPendingReconnect == nil {
		controlError(w, http.StatusBadRequest, "body must be {\"is_pending_reconnect\": true|false}")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.st.findTunnel(r.PathValue("tunnel"))
	if t == nil {
		controlError(w, http.StatusNotFound, "no such tunnel: %s", r.PathValue("tunnel"))
		return
	}
	for _, c := range t.Connectors {
		for _, conn := range c.Conns {
			if conn.ID == r.PathValue("conn") {
				conn.IsPendingReconnect = *req.IsPendingReconnect
				t.touchConns(s.now())
				s.commit()
				writeJSON(w, http.StatusOK, connView(c, conn))
				return
			}
		}
	}
	controlError(w, http.StatusNotFound, "no such connection: %s", r.PathValue("conn"))
}

// removeConnectors drops the connector clientID (all when empty) and
// returns how many connections went.
func removeConnectors(t *tunnel, clientID string, now time.Time) int {
	n := 0
	kept := t.Connectors[:0]
	for _, c := range t.Connectors {
		if clientID == "" || c.ID == clientID {
			n += len(c.Conns)
			continue
		}
		kept = append(kept, c)
	}
	t.Connectors = kept
	t.touchConns(now)
	return n
}

// ----------------------------------------------------------------- reset ----

func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st = initialState(s.opts, s.st.SharedTunnelID, s.now())
	s.faults = nil
	s.requests = nil
	s.commit()
	writeJSON(w, http.StatusOK, map[string]bool{"reset": true})
}

// commit persists the state when --state-file is set. Callers hold s.mu.
func (s *Server) commit() {
	if s.opts.StateFile == "" {
		return
	}
	if err := saveState(s.opts.StateFile, s.st); err != nil {
		log.Printf("saving state: %v", err)
	}
}

// initialState is the state at start and after a reset: no DNS records and
// the shared tunnel (id sharedID, new when empty), remotely configured with
// one rule that belongs to someone else plus the catch-all.
func initialState(opts options, sharedID string, now time.Time) *state {
	if sharedID == "" {
		sharedID = newUUID()
	}
	foreign, _ := json.Marshal(map[string]any{
		"ingress": []map[string]string{
			{"hostname": "foreign." + opts.ZoneName, "service": "http://foreign.example:80"},
			{"service": "http_status:404"},
		},
		"warp-routing": map[string]bool{"enabled": false},
	})
	shared := &tunnel{
		ID: sharedID, Name: opts.SharedTunnelName, Secret: randomBytes(32), ConfigSrc: "cloudflare",
		CreatedAt: now, ConnsInactiveAt: &now,
		Config: &tunnelConfig{Version: 1, Config: foreign, Source: "cloudflare", CreatedAt: now},
	}
	st := &state{
		AccountID: opts.AccountID, ZoneID: opts.ZoneID, ZoneName: opts.ZoneName,
		SharedTunnelID: sharedID, Tunnels: []*tunnel{shared}, Records: []*record{},
	}
	if opts.SharedTunnelConnected {
		addConnection(shared, connectionRequest{OriginIP: "192.0.2.10", ColoName: "dev01", Version: "2025.1.0"}, now)
	}
	return st
}
