package natsbus

import "strings"

// matchAny reports whether subject matches one of the subject patterns (with NATS's
// wildcards: "*" one token, ">" one or more final tokens).
func matchAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		if match(p, subject) {
			return true
		}
	}
	return false
}

// match reports whether subject matches the pattern p.
func match(p, subject string) bool {
	for {
		pt, prest, pmore := strings.Cut(p, ".")
		st, srest, smore := strings.Cut(subject, ".")
		if pt == ">" && !pmore {
			return st != ""
		}
		if pt != "*" && pt != st || st == "" {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		p, subject = prest, srest
	}
}
