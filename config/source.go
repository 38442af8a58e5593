package config

// SecretSource supplies a credential: a fixed value, or the current
// content of a secret file, re-read when it changes. It is safe for
// concurrent use.
type SecretSource struct {
	fixed Secret
	file  *Watched[Secret]
}

// NewSecretSource returns a source for value, or for file when file is set.
// The file is read once here; an unusable file is an error.
func NewSecretSource(value Secret, file string) (*SecretSource, error) {
	if file == "" {
		return &SecretSource{fixed: value}, nil
	}
	w, err := NewWatched(file, ParseSecret)
	if err != nil {
		return nil, err
	}
	return &SecretSource{file: w}, nil
}

// Get returns the current value.
func (s *SecretSource) Get() Secret {
	if s.file == nil {
		return s.fixed
	}
	return s.file.Get()
}

// Poll re-reads the file once and reports what changed (see
// Watched.Poll). It does nothing for a fixed value.
func (s *SecretSource) Poll(report func(changed bool, err error)) {
	if s.file != nil {
		s.file.Poll(report)
	}
}
