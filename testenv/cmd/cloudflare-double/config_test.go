package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func configPath(id string) string { return tunnelsPath + "/" + id + "/configurations" }

func TestSharedTunnelInitialConfig(t *testing.T) {
	e := newTestEnv(t)
	id := e.srv.st.SharedTunnelID
	tun := e.must(e.call("GET", tunnelsPath+"/"+id, nil)).result()
	if tun["name"] != "paas-shared" || tun["config_src"] != "cloudflare" || tun["status"] != "healthy" {
		t.Errorf("shared tunnel = %v", tun)
	}
	cfg := e.must(e.call("GET", configPath(id), nil)).result()
	if cfg["version"] != 1.0 || cfg["source"] != "cloudflare" || cfg["tunnel_id"] != id {
		t.Errorf("config = %v", cfg)
	}
	ingress := cfg["config"].(map[string]any)["ingress"].([]any)
	first := ingress[0].(map[string]any)
	if len(ingress) != 2 || first["hostname"] != "foreign.paas.test" || first["service"] != "http://foreign.example:80" {
		t.Errorf("ingress = %v", ingress)
	}
	if wr := cfg["config"].(map[string]any)["warp-routing"].(map[string]any); wr["enabled"] != false {
		t.Errorf("warp-routing = %v", wr)
	}
}

func TestNewTunnelHasNoConfig(t *testing.T) {
	e := newTestEnv(t)
	tun := e.createTunnel("fresh", "cloudflare")
	cfg := e.must(e.call("GET", configPath(tun["id"].(string)), nil)).result()
	if cfg["version"] != 0.0 || cfg["config"] != nil {
		t.Errorf("fresh config = %v", cfg)
	}
}

func TestPutConfigurationVersionsAndKeepsUnknownFields(t *testing.T) {
	e := newTestEnv(t)
	id := e.srv.st.SharedTunnelID
	doc := `{"config":{"ingress":[{"hostname":"a.apps.paas.test","service":"http://svc.ns:8080","originRequest":{"noTLSVerify":true,"x-custom":[1,2]}},` +
		`{"hostname":"*.apps.paas.test","path":"^/api/.*","service":"https://10.0.0.1:8443"},{"service":"http_status:404"}],` +
		`"originRequest":{"connectTimeout":30,"somethingNew":{"deep":"value"}},"warp-routing":{"enabled":true},"extra-top":"kept"}}`
	put := e.must(e.call("PUT", configPath(id), doc)).result()
	if put["version"] != 2.0 {
		t.Errorf("version after PUT = %v, want 2", put["version"])
	}
	got := e.must(e.call("GET", configPath(id), nil)).result()
	var want map[string]any
	_ = json.Unmarshal([]byte(doc), &want)
	if g, w := mustJSON(got["config"]), mustJSON(want["config"]); g != w {
		t.Errorf("config changed on the way:\n got %s\nwant %s", g, w)
	}
	e.must(e.call("PUT", configPath(id), doc))
	if v := e.must(e.call("GET", configPath(id), nil)).result()["version"]; v != 3.0 {
		t.Errorf("version after second PUT = %v", v)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestPutConfigurationValidation(t *testing.T) {
	e := newTestEnv(t)
	id := e.srv.st.SharedTunnelID
	bad := map[string]string{
		"no catch-all":             `[{"hostname":"a.paas.test","service":"http://x:1"}]`,
		"catch-all with path":      `[{"hostname":"a.paas.test","service":"http://x:1"},{"path":"/x","service":"http_status:404"}]`,
		"no hostname before last":  `[{"service":"http://x:1"},{"service":"http_status:404"}]`,
		"path only before last":    `[{"path":"^/a","service":"http://x:1"},{"service":"http_status:404"}]`,
		"missing service":          `[{"hostname":"a.paas.test"},{"service":"http_status:404"}]`,
		"bad scheme":               `[{"hostname":"a.paas.test","service":"ftp://x"},{"service":"http_status:404"}]`,
		"bad status":               `[{"service":"http_status:abc"}]`,
		"service with path":        `[{"hostname":"a.paas.test","service":"http://x:1/sub"},{"service":"http_status:404"}]`,
		"hostname with port":       `[{"hostname":"a.paas.test:443","service":"http://x:1"},{"service":"http_status:404"}]`,
		"inner wildcard":           `[{"hostname":"a.*.paas.test","service":"http://x:1"},{"service":"http_status:404"}]`,
		"bad path regex":           `[{"hostname":"a.paas.test","path":"(","service":"http://x:1"},{"service":"http_status:404"}]`,
		"ingress not an array":     `{"a":1}`,
		"service not a string":     `[{"service":404}]`,
		"bare word service":        `[{"service":"localhost:8080"}]`,
		"originRequest not object": `[{"service":"hello_world","originRequest":"x"}]`,
	}
	for name, ingress := range bad {
		a := e.call("PUT", configPath(id), `{"config":{"ingress":`+ingress+`}}`)
		if a.Status != http.StatusBadRequest || a.Body["success"] != false {
			t.Errorf("%s: got %d %v", name, a.Status, a.Body)
		}
	}
	e.wantError(e.call("PUT", configPath(id), `{}`), http.StatusBadRequest, 0)
	e.wantError(e.call("PUT", configPath(id), `{"config":[]}`), http.StatusBadRequest, 0)
	if v := e.must(e.call("GET", configPath(id), nil)).result()["version"]; v != 1.0 {
		t.Errorf("a refused PUT changed the version to %v", v)
	}
	good := []string{
		`[{"service":"hello_world"}]`,
		`[{"hostname":"s.paas.test","service":"ssh://10.0.0.2:22"},{"hostname":"t.paas.test","service":"tcp://db:5432"},` +
			`{"hostname":"u.paas.test","service":"unix:/run/app.sock"},{"hostname":"*","service":"http_status:503"}]`,
		`[]`,
	}
	for _, ingress := range good {
		e.must(e.call("PUT", configPath(id), `{"config":{"ingress":`+ingress+`}}`))
	}
}

func TestPutConfigurationDeletedTunnel(t *testing.T) {
	e := newTestEnv(t)
	tun := e.createTunnel("d", "cloudflare")
	id := tun["id"].(string)
	e.must(e.call("DELETE", tunnelsPath+"/"+id, nil))
	e.wantError(e.call("PUT", configPath(id), `{"config":{"ingress":[{"service":"hello_world"}]}}`), http.StatusNotFound, 1003)
}

// Concurrent PUTs: each is atomic and bumps the version exactly once.
func TestConcurrentConfigurationPuts(t *testing.T) {
	e := newTestEnv(t)
	id := e.srv.st.SharedTunnelID
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"config":{"ingress":[{"hostname":"h%d.paas.test","service":"http://x:1"},{"service":"http_status:404"}]}}`, i)
			if a := e.call("PUT", configPath(id), body); a.Status != http.StatusOK {
				t.Errorf("PUT %d: %d %v", i, a.Status, a.Body)
			}
		}()
	}
	wg.Wait()
	cfg := e.must(e.call("GET", configPath(id), nil)).result()
	if cfg["version"] != float64(1+n) {
		t.Errorf("version = %v, want %d", cfg["version"], 1+n)
	}
	if s := mustJSON(cfg["config"]); !strings.Contains(s, ".paas.test") {
		t.Errorf("config = %s", s)
	}
}
