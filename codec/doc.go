// Package codec turns typed Go events into [annals.Event]s and back.
//
// A [Registry] (a value, never a global) maps explicit stored type names to Go types:
//
//	reg := codec.New(nil) // JSON
//	err := codec.Register[ItemAdded](reg, "ItemAdded", nil)
//	ev, err := reg.Encode(ItemAdded{SKU: "a"}, codec.Metadata{CorrelationID: "…"})
//	v, md, err := reg.Decode(recorded) // v is an ItemAdded
//
// Stored names are never derived by reflection, so renaming a Go type does not orphan its
// events. The body is encoded with the registry's [Codec] ([JSON] by default); the metadata is
// always JSON (see [Metadata] for its field names).
//
// # Schema versions and upcasters
//
// Each registered type has a current schema version (1 unless [TypeOptions].Version says
// otherwise), recorded in every event's metadata when it is encoded. Events are immutable, so
// an old shape is turned into the current one on read: an [Upcaster] turns the stored bytes of
// version From into those of From+1, and [Registry.Decode] chains them (v1 → v2 → v3) before
// unmarshalling, so old events load as the current Go type. An event whose metadata carries no
// schema version is version 1.
//
// # Errors
//
// Decoding an event whose type is not registered returns an error matching [ErrUnknownType]
// (a [*UnknownTypeError]); a caller that wants to skip such events checks for it and goes on.
// Bodies or metadata that do not decode, a missing upcaster or a failing one, and a stored
// schema version newer than the registered one return errors matching [ErrDecode].
//
// # Correlation and causation
//
// [Metadata] carries a correlation id (the conversation an event belongs to) and a causation
// id (what caused it). A command sent in reaction to an event takes [CausedBy](event): the same
// correlation, and the event's id as causation, so that the chain from the first command to
// everything that followed can be traced through the log.
package codec
