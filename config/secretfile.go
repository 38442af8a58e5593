package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
)

// secret reads a credential from its variable or from the file its _FILE
// variable names; exactly one of the two must be set.
func (p *parser) secret(name, fileName string) (Secret, string) {
	s, file, set := p.secretOrFile(name, fileName,
		func(v string) (Secret, error) { return ParseSecret([]byte(v)) }, ReadSecretFile)
	if !set {
		p.fail(name, "is required (or %s)", fileName)
	}
	return s, file
}

// secretOrFile reads a secret setting from the variable name, checked by
// fromValue, or from the file the variable fileName names, read by
// fromFile; at most one of the two may be set. It returns the value, the
// file it came from, if any, and whether either variable is set.
func (p *parser) secretOrFile(name, fileName string, fromValue, fromFile func(string) (Secret, error)) (Secret, string, bool) {
	v, hasValue := p.values[name]
	file, hasFile := p.values[fileName]
	switch {
	case hasValue && hasFile:
		p.fail(name, "set only one of %s and %s", name, fileName)
	case hasValue:
		s, err := fromValue(v)
		if err != nil {
			p.fail(name, "%v", err)
		}
		return s, "", true
	case hasFile:
		s, err := fromFile(file)
		if err != nil {
			p.fail(fileName, "%v", err)
		}
		return s, file, true
	}
	return "", "", hasValue || hasFile
}

// ReadSecretFile reads a secret mounted as a file; see ParseSecret. Errors
// name the file and never its content.
func ReadSecretFile(path string) (Secret, error) {
	return readSecretFile(path, ParseSecret, "secret file %s %w")
}

// readSecretFile reads the file at path and parses its content; a parse
// error is wrapped by format, given the path and the error.
func readSecretFile(path string, parse func([]byte) (Secret, error), format string) (Secret, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading secret file: %w", err)
	}
	s, err := parse(data)
	if err != nil {
		return "", fmt.Errorf(format, path, err)
	}
	return s, nil
}

// ParseSecret reads a credential, from a secret file's content or an
// environment variable: surrounding white space and a leading UTF-8
// byte-order mark are stripped, and what is left must be visible ASCII,
// as an HTTP header carries it unchanged. The error for anything else
// (empty, several lines, white space inside, control bytes such as NUL,
// non-ASCII) says which, and never quotes the content.
func ParseSecret(data []byte) (Secret, error) {
	data = bytes.TrimSpace(data)
	data = bytes.TrimSpace(bytes.TrimPrefix(data, utf8BOM))
	if len(data) == 0 {
		return "", errors.New("is empty")
	}
	if bytes.ContainsAny(data, "\r\n") {
		return "", errors.New("holds more than one line")
	}
	for _, c := range data {
		switch {
		case c == ' ' || c == '\t':
			return "", errors.New("holds white space inside")
		case c < ' ' || c == 0x7f:
			return "", errors.New("holds a control character")
		case c > 0x7f:
			return "", errors.New("holds a non-ASCII character")
		}
	}
	return Secret(data), nil
}

var utf8BOM = []byte("\ufeff")

// redisURL reads GATEWAY_REDIS_URL or the file GATEWAY_REDIS_URL_FILE
// names; at most one of the two may be set.
func (p *parser) redisURL(c *Config) {
	s, file, _ := p.secretOrFile(EnvRedisURL, EnvRedisURLFile, func(v string) (Secret, error) {
		if err := checkRedisURL(v); err != nil {
			return "", err
		}
		return Secret(v), nil
	}, func(file string) (Secret, error) {
		return readSecretFile(file, ParseRedisURL, "secret file %s: %w")
	})
	c.RedisURL, c.RedisURLFile = s, file
}

// ParseRedisURL reads a Redis URL from a secret file's content, as
// ParseSecret reads a secret, and checks its scheme. Its errors never
// quote the URL, which may hold a password.
func ParseRedisURL(data []byte) (Secret, error) {
	s, err := ParseSecret(data)
	if err != nil {
		return "", err
	}
	if err := checkRedisURL(s.Reveal()); err != nil {
		return "", err
	}
	return s, nil
}

func checkRedisURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		// The parse error quotes the input, password included.
		return errors.New("not a valid URL")
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		return nil
	}
	return fmt.Errorf("scheme must be redis, rediss or unix, got %q", u.Scheme)
}
