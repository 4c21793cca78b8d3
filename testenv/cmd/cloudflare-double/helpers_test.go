package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const (
	testToken   = "test-token-0123456789"
	testAccount = "0123456789abcdef0123456789abcdef"
	testZoneID  = "fedcba9876543210fedcba9876543210"
	testZone    = "paas.test"
)

// testEnv is a running double plus a client for it.
type testEnv struct {
	t   *testing.T
	srv *Server
	ts  *httptest.Server
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	opts := options{
		Token: testToken, AccountID: testAccount, ZoneID: testZoneID, ZoneName: testZone,
		SharedTunnelName: "paas-shared", SharedTunnelConnected: true,
	}
	srv := NewServer(opts, initialState(opts, "", time.Now().UTC()))
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &testEnv{t: t, srv: srv, ts: ts}
}

// answer is a decoded API answer.
type answer struct {
	Status int
	Header http.Header
	Body   map[string]any
}

// result is the envelope's result as an object.
func (a answer) result() map[string]any {
	m, _ := a.Body["result"].(map[string]any)
	return m
}

// list is the envelope's result as a list of objects.
func (a answer) list() []map[string]any {
	items, _ := a.Body["result"].([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		out = append(out, it.(map[string]any))
	}
	return out
}

// errCode is the code of the first error.
func (a answer) errCode() int {
	errs, _ := a.Body["errors"].([]any)
	if len(errs) == 0 {
		return 0
	}
	return int(errs[0].(map[string]any)["code"].(float64))
}

// call sends an authenticated API request (path relative to /client/v4).
func (e *testEnv) call(method, path string, body any) answer {
	e.t.Helper()
	return e.callWith(method, apiPrefix+path, body, map[string]string{"Authorization": "Bearer " + testToken})
}

// control sends a request to /__double/<path>.
func (e *testEnv) control(method, path string, body any) answer {
	e.t.Helper()
	return e.callWith(method, controlPrefix+path, body, nil)
}

func (e *testEnv) callWith(method, path string, body any, headers map[string]string) answer {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(data, &a.Body); err != nil {
		e.t.Fatalf("%s %s: answer is not a JSON object: %v: %s", method, path, err, data)
	}
	return a
}

// must fails the test unless the answer is a success.
func (e *testEnv) must(a answer) answer {
	e.t.Helper()
	if a.Status != http.StatusOK || a.Body["success"] != true {
		e.t.Fatalf("want success, got %d %v", a.Status, a.Body)
	}
	return a
}

// wantError fails the test unless the answer is an error with that status
// and code (code 0: any).
func (e *testEnv) wantError(a answer, status, code int) {
	e.t.Helper()
	if a.Status != status || a.Body["success"] != false || (code != 0 && a.errCode() != code) {
		e.t.Fatalf("want error %d/%d, got %d %v", status, code, a.Status, a.Body)
	}
	if a.Body["result"] != nil {
		e.t.Fatalf("error answer with a result: %v", a.Body)
	}
}

// tunnelsPath is the cfd_tunnel collection of the test account.
const tunnelsPath = "/accounts/" + testAccount + "/cfd_tunnel"

// recordsPath is the dns_records collection of the test zone.
const recordsPath = "/zones/" + testZoneID + "/dns_records"

// secret32 is a valid tunnel_secret.
const secret32 = "AQIDBAUGBwgBAgMEBQYHCAECAwQFBgcIAQIDBAUGBwg="

// createTunnel makes a tunnel and returns its result.
func (e *testEnv) createTunnel(name, src string) map[string]any {
	e.t.Helper()
	return e.must(e.call("POST", tunnelsPath, map[string]any{"name": name, "tunnel_secret": secret32, "config_src": src})).result()
}
