package console_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/server"
)

// TestConsoleCorrelation: from an event in the streams view, the link on its correlation id
// opens its conversation: the events of that correlation id across streams, each under the
// event that caused it, the event followed from marked, and nothing from a stream the caller
// may not read. The search form finds a conversation by an event id.
func TestConsoleCorrelation(t *testing.T) {
	ctx := browser(t)
	dir := artifacts(t)
	s := newSite(t, &server.Options{Authorize: func(_ context.Context, a server.Access) error {
		if strings.HasPrefix(a.Stream, "secret-") {
			return fmt.Errorf("%w: secret", server.ErrPermissionDenied)
		}
		return nil
	}}, nil)
	cid := annals.NewUUID().String()
	ids := map[string]annals.UUID{}
	add := func(name, stream, typ, cause string) {
		t.Helper()
		md := codec.Metadata{CorrelationID: cid}
		if cause != "" {
			md.CausationID = ids[cause].String()
		}
		b, err := md.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = annals.NewUUID()
		ev := annals.Event{ID: ids[name], Type: typ, Data: []byte(`{}`), Metadata: b}
		if _, err := s.store.Append(t.Context(), stream, annals.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	add("placed", "cart-1", "OrderPlaced", "")
	add("reserved", "stock-1", "StockReserved", "placed")
	add("mailed", "mail-1", "CustomerNotified", "reserved")
	add("audited", "secret-1", "Audited", "placed")
	add("shipped", "ship-1", "Shipped", "placed")

	run(t, ctx, "open stock-1 and follow the correlation id",
		chromedp.Navigate(s.url+"/#/stream/stock-1"),
		chromedp.WaitVisible(chromedp.CSS(`#events article.event[data-revision="0"] a.correlation`)),
		chromedp.Click(chromedp.CSS(`#events article.event[data-revision="0"] a.correlation`)),
		chromedp.WaitVisible(chromedp.CSS(`#correlation-tree`)))
	wantContains(t, "summary", text(t, ctx, "#correlation-summary"), cid, "4 events")
	// The tree: placed caused reserved (which caused mailed) and shipped; audited is hidden.
	tree := eval[string](t, ctx, `(function walk(ul) {
		return [...ul.children].map(li => {
			const line = li.querySelector(":scope > .line");
			const sub = li.querySelector(":scope > ul");
			const sel = li.classList.contains("selected") ? "*" : "";
			return line.querySelector(".type").textContent + sel + "@" + line.querySelector("a.stream").textContent + (sub ? "(" + walk(sub) + ")" : "");
		}).join(" ");
	})(document.getElementById("correlation-tree"))`)
	if want := "OrderPlaced@cart-1(StockReserved*@stock-1(CustomerNotified@mail-1) Shipped@ship-1)"; tree != want {
		t.Errorf("tree %q, want %q", tree, want)
	}
	if strings.Contains(text(t, ctx, "#correlation"), "Audited") {
		t.Error("the conversation shows an event of a stream the caller may not read")
	}
	if got := eval[string](t, ctx, `document.querySelector("#nav a.active").dataset.route`); got != "correlation" {
		t.Errorf("active nav entry %q, want correlation", got)
	}
	screenshot(t, ctx, dir, "correlation")

	run(t, ctx, "look a conversation up by an event id",
		chromedp.Navigate(s.url+"/#/correlation"),
		chromedp.WaitVisible(chromedp.CSS(`#correlation-id`)),
		chromedp.SetValue(chromedp.CSS(`#correlation-id`), ids["mailed"].String()),
		chromedp.Click(chromedp.CSS(`#correlation-search button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#correlation-tree li[data-id="`+ids["mailed"].String()+`"]`)))
	wantContains(t, "summary", text(t, ctx, "#correlation-summary"), cid, "4 events")
}
