package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
)

func TestAuth(t *testing.T) {
	e := newTestEnv(t)
	path := apiPrefix + tunnelsPath
	e.wantError(e.callWith("GET", path, nil, nil), http.StatusUnauthorized, 9106)
	e.wantError(e.callWith("GET", path, nil, map[string]string{"Authorization": "Basic abc"}), http.StatusBadRequest, 6003)
	e.wantError(e.callWith("GET", path, nil, map[string]string{"Authorization": "Bearer wrong"}), http.StatusForbidden, 9109)
	e.wantError(e.callWith("GET", apiPrefix+"/user/tokens/verify", nil, map[string]string{"Authorization": "Bearer wrong"}),
		http.StatusUnauthorized, 1000)
	if got := e.must(e.call("GET", "/user/tokens/verify", nil)).result()["status"]; got != "active" {
		t.Fatalf("verify: status %v", got)
	}
}

func TestUnknownAccountRouteAndMethod(t *testing.T) {
	e := newTestEnv(t)
	e.wantError(e.call("GET", "/accounts/ffffffffffffffffffffffffffffffff/cfd_tunnel", nil), http.StatusNotFound, 7003)
	e.wantError(e.call("GET", "/no/such/thing", nil), http.StatusNotFound, 7000)
	e.wantError(e.call("PUT", tunnelsPath, nil), http.StatusMethodNotAllowed, 0)
}

func TestCreateTunnel(t *testing.T) {
	e := newTestEnv(t)
	tun := e.createTunnel("app-1", "cloudflare")
	for k, want := range map[string]any{
		"name": "app-1", "status": "inactive", "config_src": "cloudflare", "remote_config": true,
		"account_tag": testAccount, "tun_type": "cfd_tunnel", "deleted_at": nil,
	} {
		if tun[k] != want {
			t.Errorf("%s = %v, want %v", k, tun[k], want)
		}
	}
	if !uuidRE.MatchString(tun["id"].(string)) {
		t.Errorf("id %v is not a UUID", tun["id"])
	}
	if conns, ok := tun["connections"].([]any); !ok || len(conns) != 0 {
		t.Errorf("connections = %v, want []", tun["connections"])
	}

	local := e.must(e.call("POST", tunnelsPath, map[string]any{"name": "app-2"})).result()
	if local["config_src"] != "local" || local["remote_config"] != false {
		t.Errorf("default config_src: %v / %v", local["config_src"], local["remote_config"])
	}
}

func TestCreateTunnelValidation(t *testing.T) {
	e := newTestEnv(t)
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	cases := []any{
		map[string]any{"tunnel_secret": secret32},
		map[string]any{"name": "x", "tunnel_secret": short},
		map[string]any{"name": "x", "tunnel_secret": "not base64!"},
		map[string]any{"name": "x", "config_src": "elsewhere"},
		map[string]any{"name": 5},
		"{not json",
	}
	for _, body := range cases {
		e.wantError(e.call("POST", tunnelsPath, body), http.StatusBadRequest, 0)
	}
}

func TestDuplicateTunnelName(t *testing.T) {
	e := newTestEnv(t)
	first := e.createTunnel("dup", "cloudflare")
	e.wantError(e.call("POST", tunnelsPath, map[string]any{"name": "dup"}), http.StatusConflict, 1013)
	e.wantError(e.call("POST", tunnelsPath, map[string]any{"name": "paas-shared"}), http.StatusConflict, 1013)
	e.must(e.call("DELETE", tunnelsPath+"/"+first["id"].(string), nil))
	e.createTunnel("dup", "cloudflare") // a deleted tunnel's name is free again
}

func TestListTunnelsFilters(t *testing.T) {
	e := newTestEnv(t)
	a := e.createTunnel("a", "cloudflare")
	e.createTunnel("b", "cloudflare")
	e.must(e.call("DELETE", tunnelsPath+"/"+a["id"].(string), nil))

	names := func(path string) []string {
		var out []string
		for _, tun := range e.must(e.call("GET", path, nil)).list() {
			out = append(out, tun["name"].(string))
		}
		return out
	}
	if got := names(tunnelsPath); len(got) != 2 || got[0] != "paas-shared" || got[1] != "b" {
		t.Errorf("default list = %v, want live tunnels only", got)
	}
	if got := names(tunnelsPath + "?is_deleted=true"); len(got) != 1 || got[0] != "a" {
		t.Errorf("is_deleted=true = %v", got)
	}
	if got := names(tunnelsPath + "?name=b"); len(got) != 1 {
		t.Errorf("name=b = %v", got)
	}
	list := e.must(e.call("GET", tunnelsPath+"?per_page=1&page=2", nil))
	info := list.Body["result_info"].(map[string]any)
	if info["count"] != 1.0 || info["total_count"] != 2.0 || info["page"] != 2.0 || info["per_page"] != 1.0 {
		t.Errorf("result_info = %v", info)
	}
	e.wantError(e.call("GET", tunnelsPath+"?is_deleted=maybe", nil), http.StatusBadRequest, 0)
}

func TestGetAndDeleteTunnel(t *testing.T) {
	e := newTestEnv(t)
	tun := e.createTunnel("gone", "cloudflare")
	path := tunnelsPath + "/" + tun["id"].(string)
	e.must(e.call("GET", path, nil))
	del := e.must(e.call("DELETE", path, nil)).result()
	if del["deleted_at"] == nil {
		t.Fatalf("deleted tunnel without deleted_at: %v", del)
	}
	if got := e.must(e.call("GET", path, nil)).result(); got["deleted_at"] == nil {
		t.Errorf("GET of a deleted tunnel: %v", got)
	}
	e.wantError(e.call("DELETE", path, nil), http.StatusNotFound, 1003)
	e.wantError(e.call("GET", path+"/token", nil), http.StatusNotFound, 1003)
	e.wantError(e.call("GET", tunnelsPath+"/"+newUUID(), nil), http.StatusNotFound, 1003)
	e.wantError(e.call("GET", tunnelsPath+"/not-a-uuid", nil), http.StatusBadRequest, 0)
}

func TestDeleteTunnelWithConnections(t *testing.T) {
	e := newTestEnv(t)
	shared := e.srv.st.SharedTunnelID
	path := tunnelsPath + "/" + shared
	e.wantError(e.call("DELETE", path, nil), http.StatusBadRequest, 1022)
	e.must(e.call("DELETE", path+"?cascade=true", nil))

	// Only pending-reconnect connections: not active, deletable.
	tun := e.createTunnel("flaky", "cloudflare")
	id := tun["id"].(string)
	e.control("POST", "/tunnels/"+id+"/connections", map[string]any{"is_pending_reconnect": true})
	e.must(e.call("DELETE", tunnelsPath+"/"+id, nil))
}

func TestTunnelToken(t *testing.T) {
	e := newTestEnv(t)
	tun := e.createTunnel("tok", "cloudflare")
	token := e.must(e.call("GET", tunnelsPath+"/"+tun["id"].(string)+"/token", nil)).Body["result"].(string)
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]string
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["a"] != testAccount || doc["t"] != tun["id"] || doc["s"] != secret32 {
		t.Errorf("token = %v", doc)
	}
	if tun["token"] != token {
		t.Errorf("create answer token differs from GET token")
	}
}

func TestTunnelStatusAndConnections(t *testing.T) {
	e := newTestEnv(t)
	tun := e.createTunnel("st", "cloudflare")
	id := tun["id"].(string)
	status := func() string { return e.must(e.call("GET", tunnelsPath+"/"+id, nil)).result()["status"].(string) }

	conn := e.control("POST", "/tunnels/"+id+"/connections", map[string]any{"origin_ip": "198.51.100.7", "colo_name": "fra01"})
	if conn.Status != http.StatusOK || conn.Body["origin_ip"] != "198.51.100.7" || conn.Body["colo_name"] != "fra01" {
		t.Fatalf("add connection: %d %v", conn.Status, conn.Body)
	}
	if got := status(); got != "healthy" {
		t.Errorf("one connection: %s", got)
	}
	got := e.must(e.call("GET", tunnelsPath+"/"+id, nil)).result()["connections"].([]any)
	c := got[0].(map[string]any)
	for _, k := range []string{"id", "client_id", "client_version", "colo_name", "is_pending_reconnect", "opened_at", "origin_ip", "uuid"} {
		if _, ok := c[k]; !ok {
			t.Errorf("connection lacks %s: %v", k, c)
		}
	}
	e.control("POST", "/tunnels/"+id+"/connections", map[string]any{"is_pending_reconnect": true})
	if got := status(); got != "degraded" {
		t.Errorf("one active + one pending: %s", got)
	}
	connectors := e.must(e.call("GET", tunnelsPath+"/"+id+"/connections", nil)).list()
	if len(connectors) != 2 || len(connectors[0]["conns"].([]any)) != 1 {
		t.Errorf("connectors = %v", connectors)
	}
	e.control("PATCH", "/tunnels/"+id+"/connections/"+conn.Body["id"].(string), map[string]any{"is_pending_reconnect": true})
	if got := status(); got != "down" {
		t.Errorf("all pending: %s", got)
	}
	e.control("DELETE", "/tunnels/"+id+"/connections", nil)
	if got := status(); got != "down" {
		t.Errorf("after removing connections: %s", got)
	}
	e.control("POST", "/tunnels/"+id+"/connections", nil)
	e.must(e.call("DELETE", tunnelsPath+"/"+id+"/connections", nil))
	if got := status(); got != "down" {
		t.Errorf("after cleanup through the API: %s", got)
	}
}

func TestRenameTunnel(t *testing.T) {
	e := newTestEnv(t)
	tun := e.createTunnel("old", "cloudflare")
	path := tunnelsPath + "/" + tun["id"].(string)
	if got := e.must(e.call("PATCH", path, map[string]any{"name": "new"})).result()["name"]; got != "new" {
		t.Errorf("renamed to %v", got)
	}
	e.wantError(e.call("PATCH", path, map[string]any{"name": "paas-shared"}), http.StatusConflict, 1013)
}
