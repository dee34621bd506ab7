package tables

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Pebble's background errors reach the logger; its notices do not.
func TestPebbleErrorsAreLogged(t *testing.T) {
	var buf bytes.Buffer
	l := pebbleLogger{slog.New(slog.NewTextHandler(&buf, nil))}
	l.Infof("notice %d", 1)
	l.Errorf("background error %d", 2)
	got := buf.String()
	if !strings.Contains(got, "background error 2") || !strings.Contains(got, "level=ERROR") {
		t.Errorf("log %q, want the error at level ERROR", got)
	}
	if strings.Contains(got, "notice") {
		t.Errorf("log %q, want no notice", got)
	}
}
