package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal reports whether v (an input or output of the command) is a terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress is a progress bar drawn on a terminal, or nothing: its methods do nothing on a nil
// *progress.
type progress struct {
	bar  *progressbar.ProgressBar
	gone bool
}

// newProgress returns a bar counting up to total (a spinner when total is -1) drawn on w, or
// nil when show is false.
func newProgress(w io.Writer, show bool, total int64, desc string) *progress {
	if !show {
		return nil
	}
	return &progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetSpinnerChangeInterval(0), // no goroutine of its own
		progressbar.OptionClearOnFinish(),
		progressbar.OptionFullWidth(),
	)}
}

func (p *progress) add(n int) {
	if p != nil {
		p.bar.Add(n)
	}
}

func (p *progress) set(n int64) {
	if p != nil {
		p.bar.Set64(n)
	}
}

// done removes the bar from the terminal, so that the summary line (or the error) takes its
// place. Calls after the first do nothing.
func (p *progress) done() {
	if p != nil && !p.gone {
		p.gone = true
		p.bar.Finish()
		p.bar.Clear()
	}
}
