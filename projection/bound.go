package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
)

// MetadataStore is what [KeepLast] uses of an event store: every [annals.Store] is one.
type MetadataStore interface {
	annals.MetadataReader
	annals.MetadataWriter
}

// KeepLast makes sure the metadata of stream holds maxCount 1, keeping its other fields, so
// that the stream reads as its last event only (the log keeps every event). It is for the
// streams that hold one current value, such as checkpoints and progress records. When
// another writer changes the metadata meanwhile it reads it again and retries; other errors
// are the store's, wrapped. The metadata is durable when it returns nil. It is safe for
// concurrent use.
func KeepLast(ctx context.Context, store MetadataStore, stream string) error {
	for {
		meta, expected, err := store.GetMetadata(ctx, stream)
		if err != nil {
			return fmt.Errorf("read metadata of %s: %w", stream, err)
		}
		if meta.MaxCount == 1 {
			return nil
		}
		meta.MaxCount = 1
		_, err = store.SetMetadata(ctx, stream, expected, meta)
		if err == nil {
			return nil
		}
		if !errors.Is(err, annals.ErrWrongExpectedVersion) { // else changed meanwhile: look again
			return fmt.Errorf("set maxCount 1 on %s: %w", stream, err)
		}
	}
}
