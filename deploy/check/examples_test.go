package check

import (
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// placeholder marks a value that must be replaced before use.
const placeholder = "REPLACE_ME"

// credentialRun matches runs of characters that keys, tokens and hashes are
// made of, long enough to be one.
var credentialRun = regexp.MustCompile(`[A-Za-z0-9+/=_-]{16,}`)

// credentialProblems returns why value might be a real credential: it lacks
// the placeholder, holds a long mixed run of letters and digits that is not
// the placeholder, or is a URL whose password is not the placeholder.
func credentialProblems(value string) []string {
	var problems []string
	if !strings.Contains(value, placeholder) {
		problems = append(problems, "has no "+placeholder+" placeholder")
	}
	for _, run := range credentialRun.FindAllString(value, -1) {
		if strings.Contains(run, placeholder) {
			continue
		}
		if strings.ContainsAny(run, "0123456789") && strings.IndexFunc(run, isLetter) >= 0 {
			problems = append(problems, "holds a run that looks like a key or token")
			break
		}
	}
	if u, err := url.Parse(value); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && !strings.Contains(pw, placeholder) {
			problems = append(problems, "holds a URL with a password")
		}
	}
	return problems
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

// secretValues returns every value of s by key, from data and stringData.
func secretValues(s *corev1.Secret) map[string]string {
	values := make(map[string]string)
	for k, v := range s.Data {
		values[k] = string(v)
	}
	for k, v := range s.StringData {
		values[k] = v
	}
	return values
}

// TestExampleSecrets proves that deploy/examples holds placeholders only.
func TestExampleSecrets(t *testing.T) {
	secrets := exampleSecrets(t, deployDir)
	if len(secrets) == 0 {
		t.Fatal("deploy/examples renders no Secret")
	}
	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		values := secretValues(secrets[name])
		for _, key := range slices.Sorted(maps.Keys(values)) {
			t.Run(name+"/"+key, func(t *testing.T) {
				for _, p := range credentialProblems(values[key]) {
					// The value itself is never printed.
					t.Errorf("Secret/%s key %q %s", name, key, p)
				}
			})
		}
	}
}

func TestCredentialProblems(t *testing.T) {
	cases := map[string]struct {
		value string
		want  bool
	}{
		"placeholder":                {"REPLACE_ME", false},
		"placeholder in yaml":        {"callers:\n  - name: billing-service\n    token_sha256: REPLACE_ME\n", false},
		"placeholder password":       {"redis://:REPLACE_ME@redis.redis.svc.cluster.local:6379/0", false},
		"real-looking key":           {"sk_live_4eC39HqLyjWDarjtT1zdp7dc", true},
		"hash next to a placeholder": {"REPLACE_ME 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", true},
		"password in url":            {"redis://:hunter2@redis:6379/0 REPLACE_ME", true},
		"short account id":           {"12345", true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := credentialProblems(tc.value)
			if (len(got) > 0) != tc.want {
				t.Errorf("got %q; want problems: %v", got, tc.want)
			}
		})
	}
}
