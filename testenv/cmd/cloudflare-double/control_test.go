package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestFaultRateLimit(t *testing.T) {
	e := newTestEnv(t)
	f := e.control("POST", "/faults", map[string]any{
		"method": "put", "path_regex": "/configurations$", "status": 429, "count": 2, "retry_after_seconds": 7,
	})
	if f.Status != http.StatusOK {
		t.Fatalf("add fault: %d %v", f.Status, f.Body)
	}
	path := configPath(e.srv.st.SharedTunnelID)
	body := `{"config":{"ingress":[{"service":"hello_world"}]}}`
	e.must(e.call("GET", path, nil)) // other method: not affected
	for range 2 {
		a := e.call("PUT", path, body)
		e.wantError(a, http.StatusTooManyRequests, 971)
		if a.Header.Get("Retry-After") != "7" {
			t.Errorf("Retry-After = %q", a.Header.Get("Retry-After"))
		}
	}
	e.must(e.call("PUT", path, body)) // count used up: cleared
	if v := e.must(e.call("GET", path, nil)).result()["version"]; v != 2.0 {
		t.Errorf("faulted PUTs changed the configuration: version %v", v)
	}
}

func TestFaultBeforeAuthAndClear(t *testing.T) {
	e := newTestEnv(t)
	e.control("POST", "/faults", map[string]any{"path_regex": "dns_records", "status": 502, "count": 5})
	a := e.callWith("GET", apiPrefix+recordsPath, nil, nil)
	e.wantError(a, http.StatusBadGateway, 502)
	if got := e.control("GET", "/faults", nil).Body["faults"].([]any); len(got) != 1 || got[0].(map[string]any)["count"] != 4.0 {
		t.Errorf("faults = %v", got)
	}
	e.control("DELETE", "/faults", nil)
	e.must(e.call("GET", recordsPath, nil))
}

func TestFaultValidation(t *testing.T) {
	e := newTestEnv(t)
	for _, body := range []map[string]any{
		{"path_regex": "(", "status": 500},
		{"path_regex": "x", "status": 200},
		{"path_regex": "x", "status": 0},
		{"path_regex": "x", "status": 500, "count": -1},
	} {
		if a := e.control("POST", "/faults", body); a.Status != http.StatusBadRequest {
			t.Errorf("fault %v accepted: %v", body, a.Body)
		}
	}
}

func TestSlowAnswer(t *testing.T) {
	e := newTestEnv(t)
	e.control("POST", "/faults", map[string]any{"path_regex": "^/zones/", "status": 0, "delay_ms": 300})
	start := time.Now()
	e.must(e.call("GET", recordsPath, nil))
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("slow answer took only %v", took)
	}
	start = time.Now()
	e.must(e.call("GET", recordsPath, nil))
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Errorf("fault not cleared: second answer took %v", took)
	}
}

func TestRequestLog(t *testing.T) {
	e := newTestEnv(t)
	e.call("GET", tunnelsPath, nil)
	log := e.control("GET", "/requests", nil).Body
	last := int(log["last_seq"].(float64))
	e.call("POST", recordsPath, map[string]any{"type": "A", "name": "x", "content": "192.0.2.1"})
	e.callWith("GET", apiPrefix+recordsPath, nil, nil)
	entries := e.control("GET", "/requests?since="+strconv.Itoa(last), nil).Body["requests"].([]any)
	if len(entries) != 2 {
		t.Fatalf("entries since %d = %v", last, entries)
	}
	first := entries[0].(map[string]any)
	if first["method"] != "POST" || first["path"] != recordsPath || first["status"] != 200.0 {
		t.Errorf("first entry = %v", first)
	}
	if second := entries[1].(map[string]any); second["status"] != 401.0 {
		t.Errorf("second entry = %v", second)
	}
	if a := e.control("GET", "/requests?since=x", nil); a.Status != http.StatusBadRequest {
		t.Errorf("since=x: %d", a.Status)
	}
}

func TestReset(t *testing.T) {
	e := newTestEnv(t)
	shared := e.srv.st.SharedTunnelID
	e.createTunnel("temp", "cloudflare")
	e.must(e.call("POST", recordsPath, map[string]any{"type": "A", "name": "x", "content": "192.0.2.1"}))
	e.must(e.call("PUT", configPath(shared), `{"config":{"ingress":[{"service":"hello_world"}]}}`))
	e.control("POST", "/faults", map[string]any{"path_regex": "nothing-matches", "status": 500})
	if a := e.control("POST", "/reset", nil); a.Status != http.StatusOK {
		t.Fatalf("reset: %v", a.Body)
	}
	if n := len(e.must(e.call("GET", tunnelsPath, nil)).list()); n != 1 {
		t.Errorf("%d tunnels after reset", n)
	}
	if n := len(e.must(e.call("GET", recordsPath, nil)).list()); n != 0 {
		t.Errorf("%d records after reset", n)
	}
	if cfg := e.must(e.call("GET", configPath(shared), nil)).result(); cfg["version"] != 1.0 {
		t.Errorf("shared config after reset = %v", cfg)
	}
	if f := e.control("GET", "/faults", nil).Body["faults"].([]any); len(f) != 0 {
		t.Errorf("faults after reset = %v", f)
	}
}

func TestInfoAndUnknownControl(t *testing.T) {
	e := newTestEnv(t)
	inf := e.control("GET", "/info", nil).Body
	if inf["account_id"] != testAccount || inf["zone_id"] != testZoneID || inf["shared_tunnel_id"] != e.srv.st.SharedTunnelID {
		t.Errorf("info = %v", inf)
	}
	if inf["api_base"] != e.ts.URL+apiPrefix {
		t.Errorf("api_base = %v", inf["api_base"])
	}
	if _, leaked := inf["token"]; leaked {
		t.Errorf("info shows the token")
	}
	if a := e.control("GET", "/nope", nil); a.Status != http.StatusNotFound {
		t.Errorf("unknown control endpoint: %d", a.Status)
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	opts := options{Token: "t", ZoneName: testZone, SharedTunnelName: "shared", StateFile: filepath.Join(dir, "state.json")}
	first := opts
	st, err := startState(&first)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(first, st)
	srv.mu.Lock()
	st.Records = append(st.Records, &record{ID: "r1", Type: "A", Name: "x.paas.test", Content: "192.0.2.1", TTL: 1})
	srv.commit()
	srv.mu.Unlock()
	if fi, err := os.Stat(opts.StateFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}

	second := opts
	again, err := startState(&second)
	if err != nil {
		t.Fatal(err)
	}
	if second.AccountID != first.AccountID || second.ZoneID != first.ZoneID ||
		again.SharedTunnelID != st.SharedTunnelID || len(again.Records) != 1 {
		t.Errorf("state not restored: %+v vs %+v", second, first)
	}

	other := opts
	other.AccountID = "ffffffffffffffffffffffffffffffff"
	fresh, err := startState(&other)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.SharedTunnelID == st.SharedTunnelID || len(fresh.Records) != 0 {
		t.Errorf("a state of another account was reused")
	}
}

func TestParseFlags(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{"--token-file", tokenFile, "--zone-name", "Paas.Test.", "--listen", "127.0.0.1:0"})
	if err != nil || cfg.Token != "secret-token" || cfg.ZoneName != "paas.test" {
		t.Errorf("parseFlags = %+v, %v", cfg, err)
	}
	if _, err := parseFlags(nil); err == nil {
		t.Errorf("no token accepted")
	}
	if _, err := parseFlags([]string{"--token", "x", "--zone-name", "nodot"}); err == nil {
		t.Errorf("zone without a dot accepted")
	}
}
