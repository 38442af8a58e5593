package config

import "log/slog"

// Secret is a configuration value that must never be shown: its String,
// GoString, MarshalJSON, MarshalYAML, MarshalText and LogValue methods all
// return a fixed placeholder, so that printing a Config, logging it or
// encoding it cannot leak the value. Use Reveal to get the value itself, at
// the one place that sends it upstream.
type Secret string

const redacted = "<secret>"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return redacted }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalYAML() (any, error)    { return redacted, nil }
