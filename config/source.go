package config

// SecretSource supplies a credential: a fixed value, or the current
// content of a secret file, re-read when it changes. It is safe for
// concurrent use.
type SecretSource struct {
	fixed Secret
	file  *Watched[Secret]
}

// NewSecretSource returns a source for value, or for file when file is set.
// Load has read the file already: value is its content, the first value in
// force, and the file is read again only to follow its rotations. With an
// empty value the file is read here; an unusable file is an error.
func NewSecretSource(value Secret, file string) (*SecretSource, error) {
	return NewSecretSourceParsed(value, file, ParseSecret)
}

// NewSecretSourceParsed is NewSecretSource for a secret file whose content
// parse checks, such as ParseRedisURL.
func NewSecretSourceParsed(value Secret, file string, parse func([]byte) (Secret, error)) (*SecretSource, error) {
	switch {
	case file == "":
		return &SecretSource{fixed: value}, nil
	case value != "":
		return &SecretSource{file: newSeededWatched(file, parse, value)}, nil
	}
	w, err := NewWatched(file, parse)
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
