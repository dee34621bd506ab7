package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/annalsdb/annals"
)

// The plain JSON append, for any language without a gRPC or Connect client (EventStoreDB's
// POST /streams/{stream}): events whose data is JSON as it is, no base64, no protobuf names.
const restAppendRoute = "POST /v1/streams/{stream...}"

// expectedHeader carries the expected revision of a JSON append (as does ?expected=).
const expectedHeader = "Annals-Expected-Revision"

// Appended is the JSON answer of a successful POST /v1/streams/{stream}: the revision of the
// append's last event and its position in the global log, as [annals.AppendResult].
type Appended struct {
	Revision uint64 `json:"revision"`
	Position uint64 `json:"position"`
}

// errUnsupportedMediaType is the error of a JSON append whose body is not declared as JSON
// (415 in the error table).
var errUnsupportedMediaType = errors.New("annals server: unsupported media type")

// serveRESTAppend appends the events of a JSON body (see [decodeEvents]) to the stream of the
// path, with the expectation of the Annals-Expected-Revision header or the expected query
// parameter (any when neither is given), and answers 201 Created with [Appended] and a
// Location that reads the append's first event. Errors go through the error table, with an
// [ErrorBody]; a conflict's body carries the stream's actual revision.
//
// The body takes its share of the request budget ([Server.guard]) and is read as it is
// decoded, at most [Options.MaxRequestBytes] of it (more is 413, TOO_LARGE); the events'
// data and metadata are copied out of it, so a request holds about its body's size beyond
// the decoder's buffer, which holds one JSON token or field value at a time.
func (s *Server) serveRESTAppend(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	expected, events, err := s.restAppendInput(w, r)
	var res annals.AppendResult
	if err == nil {
		res, err = s.appendEvents(r.Context(), restAppendRoute, stream, expected, events, nil)
	}
	noteAppend(r.Context(), err, events)
	if err != nil {
		s.writeHTTPError(w, r, restAppendRoute, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Location", "/v1/streams/"+url.PathEscape(stream)+"?from="+strconv.FormatUint(res.Revision+1-uint64(len(events)), 10))
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(Appended{Revision: res.Revision, Position: res.Position})
}

// restAppendInput reads the expectation and the events of a JSON append. Its errors match
// [annals.ErrInvalidArgument], [annals.ErrTooLarge] (a body over Options.MaxRequestBytes)
// or errUnsupportedMediaType, or are those of reading the body.
func (s *Server) restAppendInput(w http.ResponseWriter, r *http.Request) (annals.ExpectedRevision, []annals.Event, error) {
	if err := jsonContent(r.Header); err != nil {
		return 0, nil, err
	}
	expected, err := restExpected(r)
	if err != nil {
		return 0, nil, err
	}
	limit := int64(s.opts.MaxRequestBytes)
	if r.ContentLength > limit {
		return 0, nil, tooLarge(r.ContentLength, limit)
	}
	events, err := decodeEvents(http.MaxBytesReader(w, r.Body, limit), r.PathValue("stream"))
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return 0, nil, tooLarge(-1, mbe.Limit)
	}
	return expected, events, err
}

// tooLarge is the error of a body of n bytes (-1: unknown) over limit.
func tooLarge(n, limit int64) error {
	size := "is"
	if n >= 0 {
		size = fmt.Sprintf("of %d bytes is", n)
	}
	return fmt.Errorf("%w: request body %s over the server's limit of %d bytes (max-request-bytes)", annals.ErrTooLarge, size, limit)
}

// jsonContent checks that a request declares a JSON body: Content-Type application/json, in
// UTF-8 if it names a charset, and no Content-Encoding but identity.
func jsonContent(h http.Header) error {
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		return fmt.Errorf("%w: Content-Type %q: want application/json", errUnsupportedMediaType, ct)
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("%w: Content-Encoding %q: send the body uncompressed", errUnsupportedMediaType, ce)
	}
	return nil
}

// restExpected returns the expectation of a JSON append: the Annals-Expected-Revision
// header or the expected query parameter ("any", "no-stream", "exists" or a revision, as
// [annals.ParseExpectedRevision] reads them), [annals.Any] when neither is given. Both given
// must agree, and each at most once; the query takes no other parameter.
func restExpected(r *http.Request) (annals.ExpectedRevision, error) {
	q := r.URL.Query()
	if err := checkQuery(q, "expected"); err != nil {
		return 0, err
	}
	hv, qv := r.Header.Values(expectedHeader), q["expected"]
	switch {
	case len(hv) > 1:
		return 0, fmt.Errorf("%w: header %s given %d times", annals.ErrInvalidArgument, expectedHeader, len(hv))
	case len(qv) > 1:
		return 0, fmt.Errorf("%w: query parameter expected given %d times", annals.ErrInvalidArgument, len(qv))
	case len(hv) == 1 && len(qv) == 1 && hv[0] != qv[0]:
		return 0, fmt.Errorf("%w: header %s %q and query parameter expected %q disagree: give one", annals.ErrInvalidArgument, expectedHeader, hv[0], qv[0])
	}
	v, where := "", ""
	switch {
	case len(hv) == 1:
		v, where = hv[0], "header "+expectedHeader
	case len(qv) == 1:
		v, where = qv[0], "query parameter expected"
	default:
		return annals.Any, nil
	}
	e, err := annals.ParseExpectedRevision(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", where, err)
	}
	return e, nil
}

// decodeEvents reads the body of a JSON append to stream: a JSON array of one or more
// events, each an object with the fields
//
//	"type"      the event type, a non-empty string (required);
//	"data"      any JSON value, stored byte for byte as sent (optional: no data);
//	"metadata"  any JSON value, likewise (optional);
//	"id"        the event's UUID (optional: the store generates one);
//
// and nothing after the array but white space. The events' content type is
// [annals.ContentTypeJSON]. An unknown or repeated field, a field of the wrong JSON type, a
// missing type, malformed JSON, an empty array, or anything after it is an error matching
// [annals.ErrInvalidArgument] that names the event's index and the field. An error of
// reading the body is returned as it is.
func decodeEvents(body io.Reader, stream string) ([]annals.Event, error) {
	dec := json.NewDecoder(body)
	dec.UseNumber() // a number token is not converted: 1e999 is an error of place, not of range
	var events []annals.Event
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonError(dec, err, "the body")
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("%w: the body is %s: want a JSON array of events, [{\"type\":…,\"data\":…}, …]", annals.ErrInvalidArgument, kindOf(tok))
	}
	for i := 0; dec.More(); i++ {
		e, err := decodeEvent(dec)
		if err != nil {
			return nil, fmt.Errorf("event %d of the append to %q: %w", i, stream, err)
		}
		events = append(events, e)
	}
	if _, err := dec.Token(); err != nil { // the array's end
		return nil, jsonError(dec, err, "the array of events")
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: append to %q has no events (the array is empty)", annals.ErrInvalidArgument, stream)
	}
	switch tok, err := dec.Token(); {
	case err == io.EOF:
		return events, nil
	case err != nil:
		return nil, jsonError(dec, err, "after the array")
	default:
		return nil, fmt.Errorf("%w: %s after the array of events: want nothing after it", annals.ErrInvalidArgument, kindOf(tok))
	}
}

// The fields of an event of a JSON append, as bits of a set.
const (
	fieldID = 1 << iota
	fieldType
	fieldData
	fieldMetadata
)

var eventFields = map[string]int{"id": fieldID, "type": fieldType, "data": fieldData, "metadata": fieldMetadata}

// decodeEvent reads one event object of a JSON append.
func decodeEvent(dec *json.Decoder) (annals.Event, error) {
	e := annals.Event{ContentType: annals.ContentTypeJSON}
	tok, err := dec.Token()
	if err != nil {
		return e, jsonError(dec, err, "")
	}
	if tok != json.Delim('{') {
		return e, fmt.Errorf("%w: %s: want an object {\"type\":…,\"data\":…}", annals.ErrInvalidArgument, kindOf(tok))
	}
	seen := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return e, jsonError(dec, err, "")
		}
		key, _ := tok.(string) // a key is a string, or the decoder fails
		bit := eventFields[key]
		switch {
		case bit == 0:
			return e, fmt.Errorf("%w: unknown field %q (want id, type, data, metadata)", annals.ErrInvalidArgument, key)
		case seen&bit != 0:
			return e, fmt.Errorf("%w: field %q given twice", annals.ErrInvalidArgument, key)
		}
		seen |= bit
		raw, err := fieldValue(dec, key)
		if err != nil {
			return e, err
		}
		switch bit {
		case fieldData:
			e.Data = raw
		case fieldMetadata:
			e.Metadata = raw
		case fieldType:
			e.Type, err = stringValue(raw, key)
		case fieldID:
			var id string
			if id, err = stringValue(raw, key); err == nil {
				e.ID, err = annals.ParseUUID(id)
			}
		}
		if err != nil {
			return e, err
		}
	}
	if _, err := dec.Token(); err != nil { // the object's end
		return e, jsonError(dec, err, "")
	}
	if seen&fieldType == 0 || e.Type == "" {
		return e, fmt.Errorf("%w: missing field \"type\" (a non-empty string)", annals.ErrInvalidArgument)
	}
	return e, nil
}

// fieldValue reads the value of the field key as it is in the body, which must be UTF-8 (the
// decoder would replace invalid bytes in strings silently).
func fieldValue(dec *json.Decoder, key string) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, jsonError(dec, err, fmt.Sprintf("field %q", key))
	}
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("%w: field %q is not valid UTF-8 (JSON text must be)", annals.ErrInvalidArgument, key)
	}
	return raw, nil
}

// stringValue returns the string the JSON value raw of the field key holds.
func stringValue(raw json.RawMessage, key string) (string, error) {
	if raw[0] != '"' {
		kind := map[byte]string{'{': "an object", '[': "an array", 't': "a boolean", 'f': "a boolean", 'n': "null"}[raw[0]]
		if kind == "" {
			kind = "a number"
		}
		return "", fmt.Errorf("%w: field %q is %s: want a string", annals.ErrInvalidArgument, key, kind)
	}
	var v string
	err := json.Unmarshal(raw, &v) // a valid JSON string: no error
	return v, err
}

// kindOf names the JSON kind of a token, for errors.
func kindOf(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "null"
}

// jsonError turns an error of dec at where into one matching [annals.ErrInvalidArgument];
// an error of reading the body passes unchanged.
func jsonError(dec *json.Decoder, err error, where string) error {
	if where != "" {
		where += ": "
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		// The decoder's offset is where the token or value it was reading starts.
		return fmt.Errorf("%w: %sinvalid JSON at or after byte %d of the body: %v", annals.ErrInvalidArgument, where, dec.InputOffset(), se)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: %sthe body ends before its JSON does", annals.ErrInvalidArgument, where)
	}
	return err
}
