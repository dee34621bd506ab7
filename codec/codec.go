package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/annalsdb/annals"
)

// Errors of this package. Check them with errors.Is.
var (
	// ErrUnknownType: the event's type name is not registered, a value's Go type is not
	// registered, or a decoded event is not of the Go type asked for. The error is a
	// [*UnknownTypeError].
	ErrUnknownType = errors.New("codec: unknown event type")
	// ErrDecode: an event's body or metadata does not decode, an upcaster is missing or
	// failed, or the stored schema version is newer than the registered one.
	ErrDecode = errors.New("codec: cannot decode event")
	// ErrEncode: a value or metadata cannot be encoded.
	ErrEncode = errors.New("codec: cannot encode event")
	// ErrInvalidRegistration: [Register] was given an empty or taken name, a Go type already
	// registered, an interface type, or upcasters that do not form a chain to the current
	// version.
	ErrInvalidRegistration = errors.New("codec: invalid registration")
)

// UnknownTypeError is the detail of [ErrUnknownType].
type UnknownTypeError struct {
	// Type is the stored type name (when decoding), or empty.
	Type string
	// GoType is the Go type involved: the value's type (when encoding), or the type asked for
	// that the event is not (when decoding with [Decode]).
	GoType string
}

func (e *UnknownTypeError) Error() string {
	switch {
	case e.Type != "" && e.GoType != "":
		return fmt.Sprintf("codec: event type %q does not decode to %s", e.Type, e.GoType)
	case e.Type != "":
		return fmt.Sprintf("codec: event type %q is not registered", e.Type)
	}
	return fmt.Sprintf("codec: Go type %s is not registered", e.GoType)
}

// Is makes errors.Is(err, ErrUnknownType) true.
func (e *UnknownTypeError) Is(target error) bool { return target == ErrUnknownType }

// Codec encodes event bodies. Implementations must be safe for concurrent use.
type Codec interface {
	// ContentType is recorded in each encoded event, e.g. "application/json".
	ContentType() string
	Marshal(v any) ([]byte, error)
	Unmarshal(b []byte, v any) error
}

// JSON is the default [Codec]: encoding/json, content type [annals.ContentTypeJSON].
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) ContentType() string             { return annals.ContentTypeJSON }
func (jsonCodec) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (jsonCodec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Options configure a [Registry]. The zero value (and nil) means JSON.
type Options struct {
	// Codec encodes event bodies; nil means [JSON].
	Codec Codec
}

// TypeOptions describe a registered type's schema.
type TypeOptions struct {
	// Version is the current schema version, the one the Go type has; 0 means 1.
	Version int
	// Upcasters turn stored versions older than Version into the next one. Their From values
	// must be distinct and form a chain ending at Version-1 (From: k, k+1, …, Version-1);
	// events older than the chain's first From do not decode.
	Upcasters []Upcaster
}

// Upcaster turns the stored body of schema version From into the body of version From+1 (in
// the registry codec's format). It must be safe for concurrent use and must not keep or
// modify data.
type Upcaster struct {
	From int
	Up   func(data []byte) ([]byte, error)
}

// Registry maps stored type names to Go types. Make one with [New] and add types with
// [Register]; it is safe for concurrent use (registering while decoding included).
type Registry struct {
	codec Codec
	mu    struct {
		sync.RWMutex
		byName map[string]*entry
		byType map[reflect.Type]*entry
	}
}

type entry struct {
	name      string
	goType    reflect.Type
	version   int
	upcasters map[int]func([]byte) ([]byte, error)
	decode    func(c Codec, data []byte) (any, error)
}

// New returns an empty registry.
func New(opts *Options) *Registry {
	r := &Registry{codec: JSON}
	if opts != nil && opts.Codec != nil {
		r.codec = opts.Codec
	}
	r.mu.byName = make(map[string]*entry)
	r.mu.byType = make(map[reflect.Type]*entry)
	return r
}

// Codec returns the codec of event bodies.
func (r *Registry) Codec() Codec { return r.codec }

// Register maps the stored type name to the Go type T (a concrete type: events decode to
// values of T). It returns an error matching [ErrInvalidRegistration] when name is empty or
// already registered, T is an interface or already registered, or opts is inconsistent.
func Register[T any](r *Registry, name string, opts *TypeOptions) error {
	t := reflect.TypeFor[T]()
	if t.Kind() == reflect.Interface {
		return fmt.Errorf("%w: %s is an interface; register its concrete event types", ErrInvalidRegistration, t)
	}
	if name == "" {
		return fmt.Errorf("%w: empty type name for %s", ErrInvalidRegistration, t)
	}
	var o TypeOptions
	if opts != nil {
		o = *opts
	}
	if o.Version == 0 {
		o.Version = 1
	}
	if o.Version < 1 {
		return fmt.Errorf("%w: %q: version %d is below 1", ErrInvalidRegistration, name, o.Version)
	}
	e := &entry{
		name:      name,
		goType:    t,
		version:   o.Version,
		upcasters: make(map[int]func([]byte) ([]byte, error), len(o.Upcasters)),
		decode: func(c Codec, data []byte) (any, error) {
			var v T
			if err := c.Unmarshal(data, &v); err != nil {
				return nil, err
			}
			return v, nil
		},
	}
	for _, u := range o.Upcasters {
		if u.Up == nil || u.From < 1 || u.From >= o.Version {
			return fmt.Errorf("%w: %q: upcaster from version %d: want 1 <= From < Version (%d) and a function", ErrInvalidRegistration, name, u.From, o.Version)
		}
		if _, dup := e.upcasters[u.From]; dup {
			return fmt.Errorf("%w: %q: two upcasters from version %d", ErrInvalidRegistration, name, u.From)
		}
		e.upcasters[u.From] = u.Up
	}
	for v := o.Version - len(o.Upcasters); v < o.Version; v++ {
		if _, ok := e.upcasters[v]; !ok {
			return fmt.Errorf("%w: %q: upcasters do not chain to version %d (none from %d)", ErrInvalidRegistration, name, o.Version, v)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.mu.byName[name]; ok {
		return fmt.Errorf("%w: type name %q is already registered for %s", ErrInvalidRegistration, name, old.goType)
	}
	if old, ok := r.mu.byType[t]; ok {
		return fmt.Errorf("%w: %s is already registered as %q", ErrInvalidRegistration, t, old.name)
	}
	r.mu.byName[name] = e
	r.mu.byType[t] = e
	return nil
}

// Name returns the stored type name of v's Go type (or of what v points to), and whether it
// is registered.
func (r *Registry) Name(v any) (string, bool) {
	e := r.lookupValue(v)
	if e == nil {
		return "", false
	}
	return e.name, true
}

// Version returns the current schema version registered for the stored type name, and
// whether it is registered.
func (r *Registry) Version(name string) (int, bool) {
	r.mu.RLock()
	e, ok := r.mu.byName[name]
	r.mu.RUnlock()
	if !ok {
		return 0, false
	}
	return e.version, true
}

func (r *Registry) lookupValue(v any) *entry {
	t := reflect.TypeOf(v)
	if t == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e, ok := r.mu.byType[t]; ok {
		return e
	}
	if t.Kind() == reflect.Pointer {
		return r.mu.byType[t.Elem()]
	}
	return nil
}

// Encode returns the event to append for v (a registered type, or a pointer to one): its
// registered type name, the body in the registry's codec, and md as metadata with
// SchemaVersion set to the type's current version. The ID is left zero (the store assigns
// one). Errors: [ErrUnknownType] for an unregistered Go type, [ErrEncode] when v or md do not
// encode.
func (r *Registry) Encode(v any, md Metadata) (annals.Event, error) {
	e := r.lookupValue(v)
	if e == nil {
		return annals.Event{}, &UnknownTypeError{GoType: fmt.Sprintf("%T", v)}
	}
	data, err := r.codec.Marshal(v)
	if err != nil {
		return annals.Event{}, fmt.Errorf("%w: %q: %w", ErrEncode, e.name, err)
	}
	md.SchemaVersion = e.version
	meta, err := md.Marshal()
	if err != nil {
		return annals.Event{}, fmt.Errorf("encode %q: %w", e.name, err)
	}
	return annals.Event{Type: e.name, ContentType: r.codec.ContentType(), Data: data, Metadata: meta}, nil
}

// Decode returns the value of ev's registered Go type (a T value, not a pointer) and its
// metadata as stored (SchemaVersion is the stored version; the value has been upcast to the
// current one). Errors: [ErrUnknownType] (a [*UnknownTypeError]) when ev.Type is not
// registered; [ErrDecode] when the metadata or the body do not decode, the content type is not
// the codec's, or the stored version has no upcaster chain to the current one.
func (r *Registry) Decode(ev annals.RecordedEvent) (any, Metadata, error) {
	r.mu.RLock()
	e, ok := r.mu.byName[ev.Type]
	r.mu.RUnlock()
	if !ok {
		return nil, Metadata{}, &UnknownTypeError{Type: ev.Type}
	}
	md, err := ParseMetadata(ev.Metadata)
	if err != nil {
		return nil, Metadata{}, fmt.Errorf("decode %s@%d: %w", ev.Stream, ev.Revision, err)
	}
	ct := ev.ContentType
	if ct == "" {
		ct = annals.ContentTypeJSON
	}
	if ct != r.codec.ContentType() {
		return nil, Metadata{}, fmt.Errorf("%w: %s@%d: content type %q, the codec reads %q", ErrDecode, ev.Stream, ev.Revision, ct, r.codec.ContentType())
	}
	data := ev.Data
	ver := max(md.SchemaVersion, 1)
	if ver > e.version {
		return nil, Metadata{}, fmt.Errorf("%w: %s@%d: %q schema version %d is newer than the registered %d", ErrDecode, ev.Stream, ev.Revision, ev.Type, ver, e.version)
	}
	for ; ver < e.version; ver++ {
		up, ok := e.upcasters[ver]
		if !ok {
			return nil, Metadata{}, fmt.Errorf("%w: %s@%d: %q has no upcaster from schema version %d", ErrDecode, ev.Stream, ev.Revision, ev.Type, ver)
		}
		if data, err = up(data); err != nil {
			return nil, Metadata{}, fmt.Errorf("%w: %s@%d: %q upcaster from version %d: %w", ErrDecode, ev.Stream, ev.Revision, ev.Type, ver, err)
		}
	}
	v, err := e.decode(r.codec, data)
	if err != nil {
		return nil, Metadata{}, fmt.Errorf("%w: %s@%d: %q: %w", ErrDecode, ev.Stream, ev.Revision, ev.Type, err)
	}
	return v, md, nil
}

// Decode is [Registry.Decode] for events of the Go type E, typically an interface that the
// registered event types implement. Besides the errors of [Registry.Decode], it returns an
// error matching [ErrUnknownType] when the event decodes to a type that is not an E.
func Decode[E any](r *Registry, ev annals.RecordedEvent) (E, Metadata, error) {
	var zero E
	v, md, err := r.Decode(ev)
	if err != nil {
		return zero, Metadata{}, err
	}
	e, ok := v.(E)
	if !ok {
		return zero, Metadata{}, &UnknownTypeError{Type: ev.Type, GoType: reflect.TypeFor[E]().String()}
	}
	return e, md, nil
}
