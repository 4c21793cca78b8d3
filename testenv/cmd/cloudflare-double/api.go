package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"strconv"
)

// apiError is an error answered with Cloudflare's envelope: success false and
// one entry in "errors".
type apiError struct {
	Status  int
	Code    int
	Message string
	Chain   []errorDetail
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %d %s", e.Status, e.Code, e.Message) }

// errorDetail is one element of "errors" (or of an error's "error_chain").
type errorDetail struct {
	Code       int           `json:"code"`
	Message    string        `json:"message"`
	ErrorChain []errorDetail `json:"error_chain,omitempty"`
}

// newError builds an apiError; the message may use fmt verbs.
func newError(status, code int, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// resultInfo is Cloudflare's pagination block of list answers.
type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

// envelope is the body of every API answer.
type envelope struct {
	Success    bool          `json:"success"`
	Errors     []errorDetail `json:"errors"`
	Messages   []errorDetail `json:"messages"`
	Result     any           `json:"result"`
	ResultInfo *resultInfo   `json:"result_info,omitempty"`
}

// reply is what an API handler answers on success.
type reply struct {
	result any
	info   *resultInfo
}

// apiFunc handles one API request. A non-nil error is answered with the
// error envelope (an *apiError keeps its status and code, anything else is a
// 500).
type apiFunc func(r *http.Request) (reply, error)

// methods dispatches a path to one apiFunc per HTTP method; other methods get
// Cloudflare's 405.
func methods(byMethod map[string]apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fn, ok := byMethod[r.Method]
		if !ok {
			writeError(w, newError(http.StatusMethodNotAllowed, 10405, "Method %s not allowed for this endpoint", r.Method))
			return
		}
		rep, err := fn(r)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, envelope{
			Success: true, Errors: []errorDetail{}, Messages: []errorDetail{},
			Result: rep.result, ResultInfo: rep.info,
		})
	}
}

// writeError answers err in the error envelope.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		log.Printf("internal error: %v", err)
		ae = newError(http.StatusInternalServerError, 10001, "Internal server error")
	}
	writeJSON(w, ae.Status, envelope{
		Success:  false,
		Errors:   []errorDetail{{Code: ae.Code, Message: ae.Message, ErrorChain: ae.Chain}},
		Messages: []errorDetail{},
	})
}

// writeJSON writes v as the JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		log.Printf("encoding answer: %v", err)
		http.Error(w, "encoding error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// maxBody bounds request bodies; Cloudflare's are small JSON documents.
const maxBody = 1 << 20

// decodeBody parses the JSON request body into v. A missing, malformed or
// mistyped body is a 400 with the given error code.
func decodeBody(r *http.Request, v any, code int) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return newError(http.StatusBadRequest, code, "Request body could not be read")
	}
	if len(data) > maxBody {
		return newError(http.StatusRequestEntityTooLarge, code, "Request body is too large")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return newError(http.StatusBadRequest, code, "Request body is invalid: %v", err)
	}
	return nil
}

// pageParams reads Cloudflare's page/per_page query parameters.
func pageParams(q url.Values, defPerPage, maxPerPage int) (page, perPage int, err error) {
	page, perPage = 1, defPerPage
	if v := q.Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, newError(http.StatusBadRequest, 1001, "page must be a positive integer")
		}
	}
	if v := q.Get("per_page"); v != "" {
		if perPage, err = strconv.Atoi(v); err != nil || perPage < 1 || perPage > maxPerPage {
			return 0, 0, newError(http.StatusBadRequest, 1001, "per_page must be an integer between 1 and %d", maxPerPage)
		}
	}
	return page, perPage, nil
}

// paginate cuts one page out of items and describes it.
func paginate[T any](items []T, page, perPage int) ([]T, *resultInfo) {
	total := len(items)
	start := total
	if page-1 <= total/perPage { // no overflow for absurd page numbers
		start = min((page-1)*perPage, total)
	}
	end := min(start+perPage, total)
	out := items[start:end]
	if out == nil {
		out = []T{}
	}
	return out, &resultInfo{
		Page: page, PerPage: perPage, Count: len(out), TotalCount: total,
		TotalPages: (total + perPage - 1) / perPage,
	}
}

// boolParam parses an optional true/false query parameter.
func boolParam(q url.Values, name string) (value, present bool, err error) {
	v := q.Get(name)
	if v == "" {
		return false, false, nil
	}
	b, perr := strconv.ParseBool(v)
	if perr != nil {
		return false, false, newError(http.StatusBadRequest, 1001, "%s must be true or false", name)
	}
	return b, true, nil
}
