package projection

// ValidateName checks a projection's name by the rule [NewRunner] applies: not empty, no NUL
// byte. Runners built on projection checkpoints (a relay, an ingest) check their own names by
// it. Errors match [ErrInvalid] and name the fault.
func ValidateName(name string) error { return validateName(name) }
