package annals

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// System event types, recorded in a stream's [MetaStream].
const (
	// MetadataEventType records new stream metadata; its data is the [StreamMetadata] as JSON.
	MetadataEventType = "$metadata"
	// DeletedEventType records a soft delete; its data is {"revision": last revision deleted}.
	DeletedEventType = "$deleted"
	// TombstoneEventType records a tombstone; its data is {}.
	TombstoneEventType = "$tombstone"
)

// MetaStream returns the name of the system stream that records the metadata, soft deletion
// and tombstone of stream.
func MetaStream(stream string) string { return metaPrefix + stream }

const metaPrefix = "$meta-"

// StreamMetadata limits what reads of a stream return and carries free-form settings. Reads
// honour MaxCount, MaxAge and TruncateBefore by leaving out the events they cover; the events
// stay in the log ([Store.ReadAll] still returns them).
type StreamMetadata struct {
	// MaxCount keeps only the last MaxCount events; 0 means no limit.
	MaxCount uint64 `json:"maxCount,omitempty"`
	// MaxAge keeps only events younger than MaxAge; 0 means no limit.
	MaxAge time.Duration `json:"-"`
	// TruncateBefore hides the events with a lower revision; 0 means none.
	TruncateBefore uint64 `json:"truncateBefore,omitempty"`
	// ACL lists the roles allowed each kind of access; the server enforces it.
	ACL *ACL `json:"acl,omitempty"`
	// Custom is free-form JSON for the application.
	Custom json.RawMessage `json:"custom,omitempty"`
}

// ACL lists, for each kind of access to a stream, the roles allowed it. A nil list leaves the
// server's defaults in force.
type ACL struct {
	Read      []string `json:"read,omitempty"`
	Write     []string `json:"write,omitempty"`
	Delete    []string `json:"delete,omitempty"`
	MetaRead  []string `json:"metaRead,omitempty"`
	MetaWrite []string `json:"metaWrite,omitempty"`
}

// MarshalJSON writes MaxAge as a Go duration string ("36h0m0s").
func (m StreamMetadata) MarshalJSON() ([]byte, error) {
	type plain StreamMetadata
	v := struct {
		plain
		MaxAge string `json:"maxAge,omitempty"`
	}{plain: plain(m)}
	if m.MaxAge != 0 {
		v.MaxAge = m.MaxAge.String()
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads the form MarshalJSON writes, strictly: an unknown field (a misspelt
// "maxCount", say) is an error that names it. Errors match [ErrInvalidArgument].
func (m *StreamMetadata) UnmarshalJSON(b []byte) error {
	type plain StreamMetadata
	var v struct {
		plain
		MaxAge string `json:"maxAge,omitempty"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%w: stream metadata: %w", ErrInvalidArgument, err)
	}
	*m = StreamMetadata(v.plain)
	if v.MaxAge != "" {
		d, err := time.ParseDuration(v.MaxAge)
		if err != nil {
			return fmt.Errorf("%w: stream metadata: maxAge %q: want a duration such as \"36h\"", ErrInvalidArgument, v.MaxAge)
		}
		m.MaxAge = d
	}
	return m.Validate()
}

// Validate returns an error matching [ErrInvalidArgument] for a negative MaxAge or Custom that
// is not valid JSON.
func (m *StreamMetadata) Validate() error {
	if m.MaxAge < 0 {
		return fmt.Errorf("%w: stream metadata: negative maxAge %s", ErrInvalidArgument, m.MaxAge)
	}
	if len(m.Custom) > 0 && !json.Valid(m.Custom) {
		return fmt.Errorf("%w: stream metadata: custom is not valid JSON", ErrInvalidArgument)
	}
	return nil
}
