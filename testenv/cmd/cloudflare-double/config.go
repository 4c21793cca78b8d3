package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// configView is a tunnel configuration as the API shows it.
type configView struct {
	AccountID string          `json:"account_id"`
	TunnelID  string          `json:"tunnel_id"`
	Version   int             `json:"version"`
	Config    json.RawMessage `json:"config"`
	Source    string          `json:"source"`
	CreatedAt time.Time       `json:"created_at"`
}

// configViewOf renders t's current configuration. A tunnel that never got
// one answers version 0 and config null.
func (s *Server) configViewOf(t *tunnel) configView {
	if t.Config == nil {
		return configView{
			AccountID: s.opts.AccountID, TunnelID: t.ID, Config: json.RawMessage("null"),
			Source: t.ConfigSrc, CreatedAt: t.CreatedAt,
		}
	}
	return configView{
		AccountID: s.opts.AccountID, TunnelID: t.ID, Version: t.Config.Version, Config: t.Config.Config,
		Source: t.Config.Source, CreatedAt: t.Config.CreatedAt,
	}
}

// getConfiguration answers GET .../cfd_tunnel/{id}/configurations.
func (s *Server) getConfiguration(r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTunnel(r, false)
	if err != nil {
		return reply{}, err
	}
	return reply{result: s.configViewOf(t)}, nil
}

// putConfiguration answers PUT .../cfd_tunnel/{id}/configurations with body
// {"config": {...}}: the document replaces the previous one whole and the
// version goes up by one. There is no optimistic concurrency (Cloudflare has
// none): the last writer wins.
func (s *Server) putConfiguration(r *http.Request) (reply, error) {
	var req struct {
		Config json.RawMessage `json:"config"`
	}
	if err := decodeBody(r, &req, codeTunnelBadRequest); err != nil {
		return reply{}, err
	}
	if len(req.Config) == 0 || string(req.Config) == "null" {
		return reply{}, newError(http.StatusBadRequest, codeTunnelBadRequest, "config is required")
	}
	if err := validateConfig(req.Config); err != nil {
		return reply{}, newError(http.StatusBadRequest, codeTunnelConfigBad, "Bad Configuration: Validation failed: %v", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, req.Config); err != nil {
		return reply{}, newError(http.StatusBadRequest, codeTunnelBadRequest, "config is not valid JSON")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTunnel(r, false)
	if err != nil {
		return reply{}, err
	}
	version := 1
	if t.Config != nil {
		version = t.Config.Version + 1
	}
	t.Config = &tunnelConfig{Version: version, Config: compact.Bytes(), Source: "cloudflare", CreatedAt: s.now()}
	s.commit()
	return reply{result: s.configViewOf(t)}, nil
}

// ingressRule is one element of config.ingress; other keys are kept as sent
// but not checked.
type ingressRule struct {
	Hostname      *string         `json:"hostname"`
	Path          *string         `json:"path"`
	Service       *string         `json:"service"`
	OriginRequest json.RawMessage `json:"originRequest"`
}

// validateConfig checks a configuration document the way Cloudflare (that
// is, cloudflared's ingress parser) does.
func validateConfig(raw json.RawMessage) error {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return fmt.Errorf("config must be a JSON object")
	}
	for _, key := range []string{"originRequest", "warp-routing"} {
		if v, ok := doc[key]; ok && !isObjectOrNull(v) {
			return fmt.Errorf("%s must be an object", key)
		}
	}
	ing, ok := doc["ingress"]
	if !ok || string(ing) == "null" {
		return nil
	}
	var rules []json.RawMessage
	if err := json.Unmarshal(ing, &rules); err != nil {
		return fmt.Errorf("ingress must be an array of rules")
	}
	for i, raw := range rules {
		var rule ingressRule
		if err := json.Unmarshal(raw, &rule); err != nil {
			return fmt.Errorf("Rule #%d is invalid: %v", i+1, err)
		}
		if err := validateRule(i, len(rules), rule); err != nil {
			return err
		}
	}
	return nil
}

// isObjectOrNull tells whether raw is a JSON object or null.
func isObjectOrNull(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil
}

// validateRule checks rule number i (0-based) of n: every rule needs a
// service; the last one must match everything (no hostname, no path) and
// every other one needs a hostname.
func validateRule(i, n int, rule ingressRule) error {
	num := i + 1
	if rule.Service == nil || *rule.Service == "" {
		return fmt.Errorf("Rule #%d is missing the required field \"service\"", num)
	}
	if err := validateService(*rule.Service); err != nil {
		return fmt.Errorf("Rule #%d: %v", num, err)
	}
	host, path := deref(rule.Hostname), deref(rule.Path)
	catchAll := host == "" || host == "*"
	switch {
	case i == n-1 && (!catchAll || path != ""):
		return fmt.Errorf("The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)")
	case i < n-1 && catchAll && path == "":
		return fmt.Errorf("Rule #%d is matching everything, so the rules which follow it will never be triggered; only the last rule may omit the hostname", num)
	case i < n-1 && catchAll:
		return fmt.Errorf("Rule #%d has no hostname; only the last (catch-all) rule may omit it", num)
	}
	if !catchAll {
		if err := validateHostname(host); err != nil {
			return fmt.Errorf("Rule #%d: %v", num, err)
		}
	}
	if path != "" {
		if _, err := regexp.Compile(path); err != nil {
			return fmt.Errorf("Rule #%d: path is not a valid regular expression: %v", num, err)
		}
	}
	if len(rule.OriginRequest) > 0 && !isObjectOrNull(rule.OriginRequest) {
		return fmt.Errorf("Rule #%d: originRequest must be an object", num)
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

var hostLabelRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?$`)

// validateHostname checks an ingress hostname: no port, at most one
// asterisk and only as the leftmost label.
func validateHostname(host string) error {
	if strings.Contains(host, ":") {
		return fmt.Errorf("Hostname cannot contain a port")
	}
	if strings.Count(host, "*") > 1 || (strings.Contains(host, "*") && !strings.HasPrefix(host, "*.")) {
		return fmt.Errorf("Hostname patterns can have at most one asterisk, which must be in the leftmost position")
	}
	for i, label := range strings.Split(host, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if len(label) > 63 || !hostLabelRE.MatchString(label) {
			return fmt.Errorf("%q is not a valid hostname", host)
		}
	}
	return nil
}

// urlServiceSchemes are the schemes an ingress service URL may use.
var urlServiceSchemes = map[string]bool{
	"http": true, "https": true, "ws": true, "wss": true,
	"tcp": true, "ssh": true, "rdp": true, "smb": true,
}

// validateService checks an ingress service: an origin URL, unix:PATH,
// http_status:NNN, hello_world or bastion.
func validateService(svc string) error {
	switch {
	case svc == "hello_world" || svc == "bastion":
		return nil
	case strings.HasPrefix(svc, "http_status:"):
		code, err := strconv.Atoi(strings.TrimPrefix(svc, "http_status:"))
		if err != nil || code < 100 || code > 599 {
			return fmt.Errorf("%q is not a valid service: http_status needs a status code between 100 and 599", svc)
		}
		return nil
	case strings.HasPrefix(svc, "unix:") || strings.HasPrefix(svc, "unix+tls:"):
		if _, p, _ := strings.Cut(svc, ":"); p == "" {
			return fmt.Errorf("%q is not a valid service: unix: needs a socket path", svc)
		}
		return nil
	}
	u, err := url.Parse(svc)
	if err != nil || !urlServiceSchemes[u.Scheme] || u.Host == "" {
		return fmt.Errorf("%q is not a valid service: use http(s)://, tcp://, ssh://, rdp://, smb://, unix:, http_status:NNN or hello_world", svc)
	}
	if (u.Scheme == "http" || u.Scheme == "https") && u.Path != "" && u.Path != "/" {
		return fmt.Errorf("%q is an invalid address, ingress rules don't support proxying to a different path on the origin service", svc)
	}
	return nil
}
