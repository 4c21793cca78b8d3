package main

import (
	"net/http"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	ok := map[string]string{
		"app":                     "app.paas.test",
		"App.Apps":                "app.apps.paas.test",
		"@":                       "paas.test",
		"paas.test":               "paas.test",
		"app.apps.paas.test":      "app.apps.paas.test",
		"app.apps.paas.test.":     "app.apps.paas.test",
		"*.apps":                  "*.apps.paas.test",
		"_acme-challenge.apps":    "_acme-challenge.apps.paas.test",
		"test":                    "test.paas.test",
		"x.example":               "x.example.paas.test",
		"foreign.paas.test":       "foreign.paas.test",
		"a-b.c-d.apps.paas.test":  "a-b.c-d.apps.paas.test",
		"  spaced.apps.paas.test": "spaced.apps.paas.test",
	}
	for in, want := range ok {
		got, err := normalizeName(in, testZone)
		if err != nil || got != want {
			t.Errorf("normalizeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "app.other.test", "example.com.", "a..b", "-a", "a.*.b", "bad name"} {
		if got, err := normalizeName(in, testZone); err == nil {
			t.Errorf("normalizeName(%q) = %q, want an error", in, got)
		}
	}
}

func TestRecordCRUD(t *testing.T) {
	e := newTestEnv(t)
	created := e.must(e.call("POST", recordsPath, map[string]any{
		"type": "CNAME", "name": "app.apps", "content": "tunnel-id.cfargotunnel.com", "proxied": true, "ttl": 300,
		"comment": "managed by paas-operator",
	})).result()
	id := created["id"].(string)
	for k, want := range map[string]any{
		"name": "app.apps.paas.test", "type": "CNAME", "content": "tunnel-id.cfargotunnel.com", "proxied": true,
		"ttl": 1.0, "zone_id": testZoneID, "zone_name": testZone, "comment": "managed by paas-operator", "proxiable": true,
	} {
		if created[k] != want {
			t.Errorf("created %s = %v, want %v", k, created[k], want)
		}
	}
	if len(id) != 32 || created["created_on"] == nil || created["modified_on"] == nil {
		t.Errorf("created = %v", created)
	}
	path := recordsPath + "/" + id
	if got := e.must(e.call("GET", path, nil)).result(); got["id"] != id {
		t.Errorf("GET = %v", got)
	}

	patched := e.must(e.call("PATCH", path, map[string]any{"comment": nil})).result()
	if patched["comment"] != nil || patched["content"] != "tunnel-id.cfargotunnel.com" || patched["proxied"] != true {
		t.Errorf("PATCH changed more than the comment: %v", patched)
	}
	put := e.must(e.call("PUT", path, map[string]any{"type": "A", "name": "app.apps.paas.test", "content": "192.0.2.1", "ttl": 120})).result()
	if put["type"] != "A" || put["proxied"] != false || put["ttl"] != 120.0 || put["id"] != id {
		t.Errorf("PUT = %v", put)
	}
	e.wantError(e.call("PUT", path, map[string]any{"type": "A", "content": "192.0.2.1"}), http.StatusBadRequest, 0)

	del := e.must(e.call("DELETE", path, nil)).result()
	if del["id"] != id || len(del) != 1 {
		t.Errorf("DELETE = %v", del)
	}
	e.wantError(e.call("GET", path, nil), http.StatusNotFound, 81044)
	e.wantError(e.call("DELETE", path, nil), http.StatusNotFound, 81044)
}

func TestRecordValidation(t *testing.T) {
	e := newTestEnv(t)
	bad := []map[string]any{
		{"type": "A", "name": "x", "content": "not-an-ip"},
		{"type": "A", "name": "x", "content": "2001:db8::1"},
		{"type": "AAAA", "name": "x", "content": "192.0.2.1"},
		{"type": "CNAME", "name": "x", "content": "bad host!"},
		{"type": "CNAME", "name": "x", "content": "x.paas.test"},
		{"type": "TXT", "name": "x", "content": "v", "proxied": true},
		{"type": "A", "name": "x", "content": "192.0.2.1", "ttl": 30},
		{"type": "MX", "name": "x", "content": "mail.example.com"},
		{"type": "BOGUS", "name": "x", "content": "y"},
		{"type": "A", "name": "x.other.test", "content": "192.0.2.1"},
		{"name": "x", "content": "192.0.2.1"},
		{"type": "A", "name": "x", "content": "192.0.2.1", "ttl": "300"},
	}
	for _, body := range bad {
		e.wantError(e.call("POST", recordsPath, body), http.StatusBadRequest, 0)
	}
	e.wantError(e.call("POST", recordsPath, "{oops"), http.StatusBadRequest, 9207)
	e.wantError(e.call("GET", "/zones/00000000000000000000000000000000/dns_records", nil), http.StatusNotFound, 7003)
}

func TestRecordConflicts(t *testing.T) {
	e := newTestEnv(t)
	e.must(e.call("POST", recordsPath, map[string]any{"type": "A", "name": "a", "content": "192.0.2.1"}))
	e.must(e.call("POST", recordsPath, map[string]any{"type": "A", "name": "a", "content": "192.0.2.2"}))
	e.wantError(e.call("POST", recordsPath, map[string]any{"type": "A", "name": "a.paas.test", "content": "192.0.2.1"}), http.StatusBadRequest, 81058)
	e.wantError(e.call("POST", recordsPath, map[string]any{"type": "CNAME", "name": "a", "content": "t.example"}), http.StatusBadRequest, 81053)

	e.must(e.call("POST", recordsPath, map[string]any{"type": "TXT", "name": "t", "content": "hello"}))
	e.wantError(e.call("POST", recordsPath, map[string]any{"type": "CNAME", "name": "t", "content": "t.example"}), http.StatusBadRequest, 81053)

	c := e.must(e.call("POST", recordsPath, map[string]any{"type": "CNAME", "name": "c", "content": "t.example"})).result()
	e.wantError(e.call("POST", recordsPath, map[string]any{"type": "CNAME", "name": "c", "content": "u.example"}), http.StatusBadRequest, 81053)
	e.wantError(e.call("POST", recordsPath, map[string]any{"type": "A", "name": "c", "content": "192.0.2.1"}), http.StatusBadRequest, 81054)
	// Updating a record does not conflict with itself.
	e.must(e.call("PATCH", recordsPath+"/"+c["id"].(string), map[string]any{"content": "v.example"}))
	// Renaming onto a taken name does.
	e.wantError(e.call("PATCH", recordsPath+"/"+c["id"].(string), map[string]any{"name": "a"}), http.StatusBadRequest, 81053)
}

func TestListRecordsFilters(t *testing.T) {
	e := newTestEnv(t)
	for _, r := range []map[string]any{
		{"type": "CNAME", "name": "one.apps", "content": "x.cfargotunnel.com", "comment": "paas-operator: tenant-a"},
		{"type": "CNAME", "name": "two.apps", "content": "x.cfargotunnel.com", "comment": "paas-operator: tenant-b"},
		{"type": "A", "name": "www", "content": "192.0.2.1"},
		{"type": "TXT", "name": "www", "content": "v=spf1 -all", "comment": "manual"},
	} {
		e.must(e.call("POST", recordsPath, r))
	}
	count := func(query string) int {
		t.Helper()
		return len(e.must(e.call("GET", recordsPath+query, nil)).list())
	}
	cases := map[string]int{
		"":                               4,
		"?name=one.apps.paas.test":       1,
		"?name.exact=ONE.apps.paas.test": 1,
		"?name=one.apps":                 0, // the name filter wants the FQDN
		"?type=CNAME":                    2,
		"?type=CNAME&name=www.paas.test": 0,
		"?type=CNAME&name=www.paas.test&match=any": 4,
		"?content=192.0.2.1":                       1,
		"?comment=manual":                          1,
		"?comment.contains=PAAS-OPERATOR":          2,
		"?comment.startswith=paas-operator:":       2,
		"?comment.absent":                          1,
		"?comment.present":                         3,
		"?name.endswith=.apps.paas.test":           2,
		"?proxied=false":                           4,
	}
	for q, want := range cases {
		if got := count(q); got != want {
			t.Errorf("GET dns_records%s: %d records, want %d", q, got, want)
		}
	}
	page := e.must(e.call("GET", recordsPath+"?per_page=3&page=2&order=name", nil))
	info := page.Body["result_info"].(map[string]any)
	if len(page.list()) != 1 || info["total_count"] != 4.0 || info["total_pages"] != 2.0 || info["per_page"] != 3.0 {
		t.Errorf("page 2 = %v %v", page.list(), info)
	}
	first := e.must(e.call("GET", recordsPath+"?order=name&direction=desc", nil)).list()[0]
	if first["name"] != "www.paas.test" {
		t.Errorf("order=name desc starts with %v", first["name"])
	}
	e.wantError(e.call("GET", recordsPath+"?per_page=0", nil), http.StatusBadRequest, 0)
	e.wantError(e.call("GET", recordsPath+"?order=color", nil), http.StatusBadRequest, 0)
}

func TestZones(t *testing.T) {
	e := newTestEnv(t)
	if z := e.must(e.call("GET", "/zones/"+testZoneID, nil)).result(); z["name"] != testZone {
		t.Errorf("zone = %v", z)
	}
	if zs := e.must(e.call("GET", "/zones?name=paas.test", nil)).list(); len(zs) != 1 || zs[0]["id"] != testZoneID {
		t.Errorf("zones = %v", zs)
	}
	if zs := e.must(e.call("GET", "/zones?name=other.test", nil)).list(); len(zs) != 0 {
		t.Errorf("zones for other.test = %v", zs)
	}
}
