package main

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Error codes of the DNS API. The 810xx conflict codes and 81044 are the ones
// Cloudflare is known to answer; the 9xxx validation codes follow
// Cloudflare's numbering as far as it is known.
const (
	codeDNSInvalidName    = 9000
	codeDNSNotProxiable   = 9004
	codeDNSInvalidA       = 9005
	codeDNSInvalidAAAA    = 9006
	codeDNSInvalidContent = 9007
	codeDNSInvalidType    = 9020
	codeDNSInvalidTTL     = 9021
	codeDNSInvalidField   = 9100
	codeDNSBadBody        = 9207
	codeDNSNotFound       = 81044
	codeDNSHostTaken      = 81053
	codeDNSCNAMETaken     = 81054
	codeDNSIdentical      = 81058
)

const (
	dnsDefaultPerPage = 100
	dnsMaxPerPage     = 5000000
	maxCommentLength  = 500
)

// recordTypes are the record types the double accepts.
var recordTypes = map[string]bool{"A": true, "AAAA": true, "CNAME": true, "TXT": true, "MX": true, "NS": true}

// proxiable tells whether records of that type may be proxied.
func proxiable(typ string) bool { return typ == "A" || typ == "AAAA" || typ == "CNAME" }

// recordView is a DNS record as the API shows it.
type recordView struct {
	ID         string         `json:"id"`
	ZoneID     string         `json:"zone_id"`
	ZoneName   string         `json:"zone_name"`
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Content    string         `json:"content"`
	Proxiable  bool           `json:"proxiable"`
	Proxied    bool           `json:"proxied"`
	TTL        int            `json:"ttl"`
	Priority   *int           `json:"priority,omitempty"`
	Settings   map[string]any `json:"settings"`
	Meta       map[string]any `json:"meta"`
	Comment    *string        `json:"comment"`
	Tags       []string       `json:"tags"`
	CreatedOn  time.Time      `json:"created_on"`
	ModifiedOn time.Time      `json:"modified_on"`
}

func (s *Server) recordViewOf(rec *record) recordView {
	tags := rec.Tags
	if tags == nil {
		tags = []string{}
	}
	return recordView{
		ID: rec.ID, ZoneID: s.opts.ZoneID, ZoneName: s.opts.ZoneName, Name: rec.Name, Type: rec.Type,
		Content: rec.Content, Proxiable: proxiable(rec.Type), Proxied: rec.Proxied, TTL: rec.TTL,
		Priority: rec.Priority, Settings: map[string]any{}, Meta: map[string]any{}, Comment: rec.Comment,
		Tags: tags, CreatedOn: rec.CreatedOn, ModifiedOn: rec.ModifiedOn,
	}
}

// normalizeName turns a record name as a client may send it into the FQDN
// Cloudflare stores: "@" is the apex, a name ending in the zone is taken as
// is, and other names are relative to the zone ("app" in example.com is
// app.example.com). A name that is clearly a FQDN outside the zone (it ends
// with a dot, or with the zone's top-level label as in app.other.test for
// zone paas.test) is refused.
func normalizeName(name, zone string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" {
		return "", newError(http.StatusBadRequest, codeDNSInvalidName, "DNS name is invalid: name is required")
	}
	if n == "@" {
		return zone, nil
	}
	absolute := strings.HasSuffix(n, ".")
	n = strings.TrimSuffix(n, ".")
	switch {
	case n == zone || strings.HasSuffix(n, "."+zone):
	case absolute || (strings.Contains(n, ".") && lastLabel(n) == lastLabel(zone)):
		return "", newError(http.StatusBadRequest, codeDNSInvalidName,
			"DNS name is invalid: %s is not within the zone %s", strings.TrimSuffix(n, "."), zone)
	default:
		n += "." + zone
	}
	if err := validateDNSName(n); err != nil {
		return "", err
	}
	return n, nil
}

func lastLabel(name string) string { return name[strings.LastIndex(name, ".")+1:] }

// validateDNSName checks a FQDN: labels of letters, digits, '-' and '_', at
// most 63 characters each, a leading "*" label allowed, 253 characters total.
func validateDNSName(n string) error {
	bad := newError(http.StatusBadRequest, codeDNSInvalidName, "DNS name is invalid: %q", n)
	if len(n) > 253 {
		return bad
	}
	for i, label := range strings.Split(n, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if label == "" || len(label) > 63 || !hostLabelRE.MatchString(label) {
			return bad
		}
	}
	return nil
}

// recordInput is the body of POST, PUT and PATCH on dns_records; nil (or an
// empty RawMessage) means "not sent".
type recordInput struct {
	Type     *string         `json:"type"`
	Name     *string         `json:"name"`
	Content  *string         `json:"content"`
	TTL      *int            `json:"ttl"`
	Proxied  *bool           `json:"proxied"`
	Priority *int            `json:"priority"`
	Comment  json.RawMessage `json:"comment"`
	Tags     *[]string       `json:"tags"`
}

// applyInput writes the fields sent in in onto rec and validates the result.
// For a full write (POST, PUT) type, name and content are required and the
// other fields not sent get their defaults.
func (s *Server) applyInput(rec *record, in recordInput, full bool) error {
	if full {
		if in.Type == nil || in.Name == nil || in.Content == nil {
			return newError(http.StatusBadRequest, codeDNSInvalidField, "type, name and content are required")
		}
		*rec = record{ID: rec.ID, CreatedOn: rec.CreatedOn, TTL: 1, Tags: []string{}}
	}
	if in.Type != nil {
		rec.Type = strings.ToUpper(strings.TrimSpace(*in.Type))
	}
	if in.Name != nil {
		n, err := normalizeName(*in.Name, s.opts.ZoneName)
		if err != nil {
			return err
		}
		rec.Name = n
	}
	if in.Content != nil {
		rec.Content = strings.TrimSpace(*in.Content)
	}
	if in.TTL != nil {
		rec.TTL = *in.TTL
	}
	if in.Proxied != nil {
		rec.Proxied = *in.Proxied
	}
	if in.Priority != nil {
		p := *in.Priority
		rec.Priority = &p
	}
	if in.Tags != nil {
		rec.Tags = append([]string{}, *in.Tags...)
	}
	if err := applyComment(rec, in.Comment); err != nil {
		return err
	}
	return validateRecord(rec)
}

// applyComment sets (string), clears (null) or keeps (not sent) the comment.
func applyComment(rec *record, raw json.RawMessage) error {
	switch {
	case len(raw) == 0:
		return nil
	case string(raw) == "null":
		rec.Comment = nil
		return nil
	}
	var c string
	if err := json.Unmarshal(raw, &c); err != nil {
		return newError(http.StatusBadRequest, codeDNSInvalidField, "comment must be a string")
	}
	if len(c) > maxCommentLength {
		return newError(http.StatusBadRequest, codeDNSInvalidField, "comment is longer than %d characters", maxCommentLength)
	}
	rec.Comment = &c
	return nil
}

// validateRecord checks type, content, TTL, proxying and priority, and
// normalises what Cloudflare normalises (hostnames in content, the TTL of
// proxied records, which is always "automatic").
func validateRecord(rec *record) error {
	if !recordTypes[rec.Type] {
		return newError(http.StatusBadRequest, codeDNSInvalidType, "Invalid DNS record type: %q", rec.Type)
	}
	if err := validateContent(rec); err != nil {
		return err
	}
	if rec.TTL != 1 && (rec.TTL < 60 || rec.TTL > 86400) {
		return newError(http.StatusBadRequest, codeDNSInvalidTTL, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.")
	}
	if rec.Proxied {
		if !proxiable(rec.Type) {
			return newError(http.StatusBadRequest, codeDNSNotProxiable, "This record type cannot be proxied.")
		}
		rec.TTL = 1
	}
	if rec.Type == "MX" && rec.Priority == nil {
		return newError(http.StatusBadRequest, codeDNSInvalidField, "priority is required for MX records")
	}
	return nil
}

// validateContent checks (and for hostnames normalises) rec.Content.
func validateContent(rec *record) error {
	switch rec.Type {
	case "A":
		if ip, err := netip.ParseAddr(rec.Content); err != nil || !ip.Is4() {
			return newError(http.StatusBadRequest, codeDNSInvalidA, "Content for A record is invalid. Must be a valid IPv4 address")
		}
	case "AAAA":
		if ip, err := netip.ParseAddr(rec.Content); err != nil || !ip.Is6() || ip.Is4In6() {
			return newError(http.StatusBadRequest, codeDNSInvalidAAAA, "Content for AAAA record is invalid. Must be a valid IPv6 address")
		}
	case "CNAME", "MX", "NS":
		host := strings.TrimSuffix(strings.ToLower(rec.Content), ".")
		if host == "" || validateDNSName(host) != nil || strings.HasPrefix(host, "*") {
			return newError(http.StatusBadRequest, codeDNSInvalidContent, "Content for %s record is invalid. Must be a valid hostname", rec.Type)
		}
		if rec.Type == "CNAME" && host == rec.Name {
			return newError(http.StatusBadRequest, codeDNSInvalidContent, "Content for CNAME record is invalid. A CNAME cannot point to itself")
		}
		rec.Content = host
	case "TXT":
		if rec.Content == "" {
			return newError(http.StatusBadRequest, codeDNSInvalidContent, "Content for TXT record is invalid. Must not be empty")
		}
	}
	return nil
}

// conflict applies Cloudflare's same-name rules to candidate against the
// other records of the zone: a CNAME shares its name with nothing (81053),
// nothing joins a CNAME (81054), and no record is added twice (81058).
func (st *state) conflict(candidate *record) error {
	for _, r := range st.Records {
		if r.ID == candidate.ID || r.Name != candidate.Name {
			continue
		}
		switch {
		case candidate.Type == "CNAME":
			return newError(http.StatusBadRequest, codeDNSHostTaken, "An A, AAAA, or CNAME record with that host already exists.")
		case r.Type == "CNAME":
			return newError(http.StatusBadRequest, codeDNSCNAMETaken, "A CNAME record with that host already exists.")
		case r.Type == candidate.Type && strings.EqualFold(r.Content, candidate.Content):
			return newError(http.StatusBadRequest, codeDNSIdentical, "An identical record already exists.")
		}
	}
	return nil
}

// lookupRecord finds the record of the request path. Callers hold s.mu.
func (s *Server) lookupRecord(r *http.Request) (*record, error) {
	rec := s.st.findRecord(r.PathValue("record"))
	if rec == nil {
		return nil, newError(http.StatusNotFound, codeDNSNotFound, "Record does not exist.")
	}
	return rec, nil
}

// createRecord answers POST /zones/{zone}/dns_records.
func (s *Server) createRecord(r *http.Request) (reply, error) {
	var in recordInput
	if err := decodeBody(r, &in, codeDNSBadBody); err != nil {
		return reply{}, err
	}
	rec := &record{ID: newHexID()}
	if err := s.applyInput(rec, in, true); err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.st.conflict(rec); err != nil {
		return reply{}, err
	}
	rec.CreatedOn = s.now()
	rec.ModifiedOn = rec.CreatedOn
	s.st.Records = append(s.st.Records, rec)
	s.commit()
	return reply{result: s.recordViewOf(rec)}, nil
}

// getRecord answers GET /zones/{zone}/dns_records/{id}.
func (s *Server) getRecord(r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.lookupRecord(r)
	if err != nil {
		return reply{}, err
	}
	return reply{result: s.recordViewOf(rec)}, nil
}

// replaceRecord answers PUT (full: everything not sent is reset) and
// patchRecord PATCH (only what is sent changes).
func (s *Server) replaceRecord(r *http.Request) (reply, error) { return s.writeRecord(r, true) }
func (s *Server) patchRecord(r *http.Request) (reply, error)   { return s.writeRecord(r, false) }

func (s *Server) writeRecord(r *http.Request, full bool) (reply, error) {
	var in recordInput
	if err := decodeBody(r, &in, codeDNSBadBody); err != nil {
		return reply{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.lookupRecord(r)
	if err != nil {
		return reply{}, err
	}
	updated := *rec
	if err := s.applyInput(&updated, in, full); err != nil {
		return reply{}, err
	}
	if err := s.st.conflict(&updated); err != nil {
		return reply{}, err
	}
	updated.ModifiedOn = s.now()
	*rec = updated
	s.commit()
	return reply{result: s.recordViewOf(rec)}, nil
}

// deleteRecord answers DELETE /zones/{zone}/dns_records/{id} with {"id": id}.
func (s *Server) deleteRecord(r *http.Request) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.lookupRecord(r)
	if err != nil {
		return reply{}, err
	}
	s.st.Records = slices.DeleteFunc(s.st.Records, func(x *record) bool { return x == rec })
	s.commit()
	return reply{result: map[string]string{"id": rec.ID}}, nil
}

// listRecords answers GET /zones/{zone}/dns_records with Cloudflare's
// filters (name, content, comment: exact or .exact/.contains/.startswith/
// .endswith, case-insensitive; comment.present/.absent; type; proxied;
// match=all|any), order/direction and pagination.
func (s *Server) listRecords(r *http.Request) (reply, error) {
	q := r.URL.Query()
	preds, err := recordFilters(q)
	if err != nil {
		return reply{}, err
	}
	page, perPage, err := pageParams(q, dnsDefaultPerPage, dnsMaxPerPage)
	if err != nil {
		return reply{}, err
	}
	matchAny := q.Get("match") == "any"
	if m := q.Get("match"); m != "" && m != "any" && m != "all" {
		return reply{}, newError(http.StatusBadRequest, codeDNSInvalidField, "match must be any or all")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var matched []*record
	for _, rec := range s.st.Records {
		if matches(rec, preds, matchAny) {
			matched = append(matched, rec)
		}
	}
	if err := sortRecords(matched, q.Get("order"), q.Get("direction")); err != nil {
		return reply{}, err
	}
	views := make([]recordView, 0, len(matched))
	for _, rec := range matched {
		views = append(views, s.recordViewOf(rec))
	}
	out, info := paginate(views, page, perPage)
	return reply{result: out, info: info}, nil
}

// recordPredicate is one list filter.
type recordPredicate func(*record) bool

// recordFilters turns the query into predicates.
func recordFilters(q url.Values) ([]recordPredicate, error) {
	fields := map[string]func(*record) (string, bool){
		"name":    func(r *record) (string, bool) { return r.Name, true },
		"content": func(r *record) (string, bool) { return r.Content, true },
		"comment": func(r *record) (string, bool) {
			if r.Comment == nil {
				return "", false
			}
			return *r.Comment, true
		},
	}
	ops := map[string]func(have, want string) bool{
		"": strings.EqualFold, "exact": strings.EqualFold,
		"contains":   func(h, w string) bool { return strings.Contains(strings.ToLower(h), strings.ToLower(w)) },
		"startswith": func(h, w string) bool { return strings.HasPrefix(strings.ToLower(h), strings.ToLower(w)) },
		"endswith":   func(h, w string) bool { return strings.HasSuffix(strings.ToLower(h), strings.ToLower(w)) },
	}
	var preds []recordPredicate
	for key, values := range q {
		field, op, _ := strings.Cut(key, ".")
		get, isField := fields[field]
		want := values[0]
		if field == "name" {
			want = strings.TrimSuffix(want, ".")
		}
		switch {
		case field == "comment" && op == "present":
			preds = append(preds, func(r *record) bool { return r.Comment != nil })
		case field == "comment" && op == "absent":
			preds = append(preds, func(r *record) bool { return r.Comment == nil })
		case isField && ops[op] != nil:
			cmpFn := ops[op]
			preds = append(preds, func(r *record) bool { v, ok := get(r); return ok && cmpFn(v, want) })
		case isField:
			return nil, newError(http.StatusBadRequest, codeDNSInvalidField, "unsupported filter %s", key)
		case key == "type":
			preds = append(preds, func(r *record) bool { return strings.EqualFold(r.Type, want) })
		case key == "proxied":
			p, _, err := boolParam(q, "proxied")
			if err != nil {
				return nil, err
			}
			preds = append(preds, func(r *record) bool { return r.Proxied == p })
		}
	}
	return preds, nil
}

// matches applies the predicates (all of them, or any with match=any).
func matches(rec *record, preds []recordPredicate, matchAny bool) bool {
	if len(preds) == 0 {
		return true
	}
	for _, p := range preds {
		if p(rec) == matchAny {
			return matchAny
		}
	}
	return !matchAny
}

// sortRecords orders by type, name, content, ttl or proxied (creation order
// when order is empty); direction asc (default) or desc.
func sortRecords(recs []*record, order, direction string) error {
	keys := map[string]func(a, b *record) int{
		"type":    func(a, b *record) int { return cmp.Compare(a.Type, b.Type) },
		"name":    func(a, b *record) int { return cmp.Compare(a.Name, b.Name) },
		"content": func(a, b *record) int { return cmp.Compare(a.Content, b.Content) },
		"ttl":     func(a, b *record) int { return cmp.Compare(a.TTL, b.TTL) },
		"proxied": func(a, b *record) int { return cmp.Compare(boolInt(a.Proxied), boolInt(b.Proxied)) },
	}
	if direction != "" && direction != "asc" && direction != "desc" {
		return newError(http.StatusBadRequest, codeDNSInvalidField, "direction must be asc or desc")
	}
	if order == "" {
		if direction == "desc" {
			slices.Reverse(recs)
		}
		return nil
	}
	key, ok := keys[order]
	if !ok {
		return newError(http.StatusBadRequest, codeDNSInvalidField, "order must be one of type, name, content, ttl, proxied")
	}
	slices.SortStableFunc(recs, func(a, b *record) int {
		if direction == "desc" {
			return key(b, a)
		}
		return key(a, b)
	})
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// zoneView is the zone as GET /zones shows it.
type zoneView struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Status      string            `json:"status"`
	Paused      bool              `json:"paused"`
	Type        string            `json:"type"`
	NameServers []string          `json:"name_servers"`
	Account     map[string]string `json:"account"`
}

func (s *Server) zoneViewOf() zoneView {
	return zoneView{
		ID: s.opts.ZoneID, Name: s.opts.ZoneName, Status: "active", Type: "full",
		NameServers: []string{"ns1.cloudflare-double.invalid", "ns2.cloudflare-double.invalid"},
		Account:     map[string]string{"id": s.opts.AccountID, "name": "cloudflare-double"},
	}
}

// getZone answers GET /zones/{zone}.
func (s *Server) getZone(*http.Request) (reply, error) { return reply{result: s.zoneViewOf()}, nil }

// listZones answers GET /zones[?name=...] (the one zone, if it matches).
func (s *Server) listZones(r *http.Request) (reply, error) {
	q := r.URL.Query()
	page, perPage, err := pageParams(q, 20, 50)
	if err != nil {
		return reply{}, err
	}
	zones := []zoneView{}
	if name := strings.TrimSuffix(strings.ToLower(q.Get("name")), "."); name == "" || name == s.opts.ZoneName {
		zones = append(zones, s.zoneViewOf())
	}
	out, info := paginate(zones, page, perPage)
	return reply{result: out, info: info}, nil
}
