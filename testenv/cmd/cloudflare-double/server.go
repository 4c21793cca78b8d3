package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
	"time"
)

// apiPrefix is where the API lives, as in https://api.cloudflare.com/client/v4.
const apiPrefix = "/client/v4"

// controlPrefix is where the test-control endpoints live (not Cloudflare's).
const controlPrefix = "/__double"

// options is what the command line decides.
type options struct {
	Token            string
	AccountID        string
	ZoneID           string
	ZoneName         string
	SharedTunnelName string
	// SharedTunnelConnected gives the shared tunnel one simulated healthy
	// connection, as if its cloudflared were running.
	SharedTunnelConnected bool
	StateFile             string
}

// Server is the Cloudflare API double. One mutex guards the state, the
// faults and the request log; handlers hold it for their whole (short) run,
// so every API call, a configuration PUT included, is atomic.
type Server struct {
	opts options
	now  func() time.Time

	mu       sync.Mutex
	st       *state
	faults   []*fault
	requests []requestEntry
	seq      int64
	faultSeq int

	handler http.Handler
}

// NewServer builds a server whose state is st (see initialState / loadState).
func NewServer(opts options, st *state) *Server {
	s := &Server{opts: opts, st: st, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
	s.handler = s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// routes wires the API (behind logging, faults and authentication) and the
// control endpoints.
func (s *Server) routes() http.Handler {
	api := http.NewServeMux()
	acc := apiPrefix + "/accounts/{account}"
	tun := acc + "/cfd_tunnel/{tunnel}"
	zone := apiPrefix + "/zones/{zone}"
	api.Handle(apiPrefix+"/user/tokens/verify", methods(map[string]apiFunc{"GET": s.verifyToken}))
	api.Handle(acc+"/tokens/verify", s.inAccount(methods(map[string]apiFunc{"GET": s.verifyToken})))
	api.Handle(acc+"/cfd_tunnel", s.inAccount(methods(map[string]apiFunc{"GET": s.listTunnels, "POST": s.createTunnel})))
	api.Handle(tun, s.inAccount(methods(map[string]apiFunc{"GET": s.getTunnel, "PATCH": s.updateTunnel, "DELETE": s.deleteTunnel})))
	api.Handle(tun+"/token", s.inAccount(methods(map[string]apiFunc{"GET": s.tunnelToken})))
	api.Handle(tun+"/connections", s.inAccount(methods(map[string]apiFunc{"GET": s.listConnections, "DELETE": s.cleanupConnections})))
	api.Handle(tun+"/configurations", s.inAccount(methods(map[string]apiFunc{"GET": s.getConfiguration, "PUT": s.putConfiguration})))
	api.Handle(apiPrefix+"/zones", methods(map[string]apiFunc{"GET": s.listZones}))
	api.Handle(zone, s.inZone(methods(map[string]apiFunc{"GET": s.getZone})))
	api.Handle(zone+"/dns_records", s.inZone(methods(map[string]apiFunc{"GET": s.listRecords, "POST": s.createRecord})))
	api.Handle(zone+"/dns_records/{record}", s.inZone(methods(map[string]apiFunc{
		"GET": s.getRecord, "PUT": s.replaceRecord, "PATCH": s.patchRecord, "DELETE": s.deleteRecord,
	})))
	api.HandleFunc(apiPrefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, newError(http.StatusNotFound, 7000, "No route for that URI"))
	})

	root := http.NewServeMux()
	root.Handle(apiPrefix+"/", s.logged(s.faulted(s.authenticated(trimSlash(api)))))
	s.controlRoutes(root)
	return root
}

// inAccount answers 404 for any account but ours.
func (s *Server) inAccount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("account") != s.opts.AccountID {
			writeError(w, couldNotRoute(r))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// inZone answers 404 for any zone but ours.
func (s *Server) inZone(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("zone") != s.opts.ZoneID {
			writeError(w, couldNotRoute(r))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// couldNotRoute is Cloudflare's answer for an unknown account or zone id.
func couldNotRoute(r *http.Request) *apiError {
	return newError(http.StatusNotFound, 7003,
		"Could not route to %s, perhaps your object identifier is invalid?", strings.TrimPrefix(r.URL.Path, apiPrefix))
}

// authenticated checks "Authorization: Bearer <token>".
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkAuth(r); err != nil {
			writeError(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkAuth validates the request's credentials. Only API tokens exist in
// the double; the legacy X-Auth-Key/X-Auth-Email pair is refused.
func (s *Server) checkAuth(r *http.Request) *apiError {
	h := r.Header.Get("Authorization")
	if h == "" {
		if r.Header.Get("X-Auth-Key") != "" || r.Header.Get("X-Auth-Email") != "" {
			return newError(http.StatusForbidden, 9103, "Unknown X-Auth-Key or X-Auth-Email")
		}
		return newError(http.StatusUnauthorized, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
	}
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(token) == "" || strings.ContainsAny(token, " \t") {
		e := newError(http.StatusBadRequest, 6003, "Invalid request headers")
		e.Chain = []errorDetail{{Code: 6111, Message: "Invalid format for Authorization header"}}
		return e
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.Token)) != 1 {
		if strings.HasSuffix(r.URL.Path, "/tokens/verify") {
			return newError(http.StatusUnauthorized, 1000, "Invalid API Token")
		}
		return newError(http.StatusForbidden, 9109, "Invalid access token")
	}
	return nil
}

// verifyToken answers GET /user/tokens/verify (and the account variant).
func (s *Server) verifyToken(*http.Request) (reply, error) {
	return reply{result: map[string]any{"id": tokenID(s.opts.Token), "status": "active"}}, nil
}

// tokenID derives a stable, non-secret id for the token.
func tokenID(token string) string {
	sum := sha256.Sum256([]byte("cloudflare-double token id:" + token))
	return hex.EncodeToString(sum[:16])
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
	fault  bool // an injected fault touched the request
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// logged appends every API request to the request log once answered.
func (s *Server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		s.logRequest(r, rec.status, time.Since(start), rec.fault)
	})
}

// trimSlash drops one trailing slash, which Cloudflare ignores
// (".../dns_records/" is ".../dns_records").
func trimSlash(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; len(p) > len(apiPrefix)+1 && strings.HasSuffix(p, "/") {
			r2 := r.Clone(r.Context())
			r2.URL.Path = strings.TrimSuffix(p, "/")
			r2.URL.RawPath = ""
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}
