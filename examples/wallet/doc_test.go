package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docGo matches a fenced Go block of a Markdown page.
var docGo = regexp.MustCompile("(?s)```go\n(.*?)```")

// TestDocExcerpts checks that every Go excerpt of docs/service.md is in the file its first line
// names, word for word: a line "// …" leaves out what lies between two parts, which must be
// in the file in that order.
func TestDocExcerpts(t *testing.T) {
	doc, err := os.ReadFile("../../docs/service.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := docGo.FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 5 {
		t.Fatalf("docs/service.md has %d Go excerpts; want the walk-through's", len(blocks))
	}
	for i, b := range blocks {
		name, body, _ := strings.Cut(b[1], "\n")
		file, ok := strings.CutPrefix(name, "// examples/wallet/")
		if !ok {
			t.Errorf("excerpt %d: first line %q: want // examples/wallet/FILE", i+1, name)
			continue
		}
		src, err := os.ReadFile(filepath.FromSlash(file))
		if err != nil {
			t.Errorf("excerpt %d: %v", i+1, err)
			continue
		}
		rest := string(src)
		for part := range strings.SplitSeq(body, "// …\n") {
			at := strings.Index(rest, part)
			if at < 0 {
				t.Errorf("excerpt %d is not in %s as it is in the doc:\n%s", i+1, file, part)
				break
			}
			rest = rest[at+len(part):]
		}
	}
}
