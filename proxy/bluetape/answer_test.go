package bluetape

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// answerKey and answerAccount are the credentials of the answer tests;
// some cases spell them out in encoded forms.
const (
	answerKey     = "k-3b9f1d2e8c7a6b5d"
	answerAccount = "acct-77f1"
)

// longURL is an https URL of exactly n bytes.
func longURL(n int) string {
	const prefix = "https://www.bluetape.com/signup?id="
	return prefix + strings.Repeat("a", n-len(prefix))
}

func TestDecodeSignupAccepts(t *testing.T) {
	const u = "https://www.bluetape.com/signup?id=97bee7a043b58084"
	cases := map[string]struct{ body, want string }{
		"the documented answer":    {`{"signUpUrl": "https://www.bluetape.com/signup?id=97bee7a043b58084"}`, u},
		"white space around":       {" \n{\"signUpUrl\":\"" + u + "\"}\r\n\t ", u},
		"other fields":             {`{"id":"c1","signUpUrl":"` + u + `","meta":{"a":[1,{"b":null}],"c":true},"n":1e999}`, u},
		"escaped name":             {`{"sign\u0055pUrl":"` + u + `"}`, u},
		"escaped slashes":          {`{"signUpUrl":"https:\/\/www.bluetape.com\/signup?id=97bee7a043b58084"}`, u},
		"http":                     {`{"signUpUrl":"http://sandbox.local:8080/s?id=1"}`, "http://sandbox.local:8080/s?id=1"},
		"upper-case scheme":        {`{"signUpUrl":"HTTPS://www.bluetape.com/"}`, "HTTPS://www.bluetape.com/"},
		"2048 bytes":               {`{"signUpUrl":"` + longURL(2048) + `"}`, longURL(2048)},
		"fragment and port":        {`{"signUpUrl":"https://www.bluetape.com:8443/s#x"}`, "https://www.bluetape.com:8443/s#x"},
		"same name in other level": {`{"signUpUrl":"` + u + `","x":{"signUpUrl":1,"signupurl":2}}`, u},
		"same name in two objects": {`{"a":{"k":1},"b":{"k":2},"signUpUrl":"` + u + `"}`, u},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeSignup([]byte(tc.body), answerKey, answerAccount)
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestDecodeSignupRefuses pins the error of each refused body. No error
// quotes the body.
func TestDecodeSignupRefuses(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"empty":             {``, "not valid JSON"},
		"white space":       {" \n", "not valid JSON"},
		"array":             {`["https://www.bluetape.com/"]`, "not a JSON object"},
		"null":              {`null`, "not a JSON object"},
		"string":            {`"https://www.bluetape.com/"`, "not a JSON object"},
		"no field":          {`{}`, "no signUpUrl"},
		"other fields only": {`{"url":"https://www.bluetape.com/"}`, "no signUpUrl"},
		"truncated":         {`{"signUpUrl":"https://www.bluetape.com/"`, "not valid JSON"},
		"bad syntax":        {`{"signUpUrl":"https://www.bluetape.com/",}`, "not valid JSON"},
		"bad nested syntax": {`{"signUpUrl":"https://www.bluetape.com/","x":[1,]}`, "not valid JSON"},
		"single quotes":     {`{'signUpUrl':'https://www.bluetape.com/'}`, "not valid JSON"},
		"data after":        {`{"signUpUrl":"https://www.bluetape.com/"} x`, "data after the JSON object"},
		"second object":     {`{"signUpUrl":"https://www.bluetape.com/"}{"signUpUrl":"https://evil.example/"}`, "data after the JSON object"},
		"twice":             {`{"signUpUrl":"https://www.bluetape.com/","signUpUrl":"https://evil.example/"}`, "signUpUrl appears twice"},
		"twice, same value": {`{"signUpUrl":"https://www.bluetape.com/","signUpUrl":"https://www.bluetape.com/"}`, "signUpUrl appears twice"},
		"twice, escaped":    {`{"signUpUrl":"https://www.bluetape.com/","sign\u0055pUrl":"https://evil.example/"}`, "signUpUrl appears twice"},
		"lower case beside": {`{"signUpUrl":"https://www.bluetape.com/","signupurl":"https://evil.example/"}`, "a name differs from signUpUrl only in case"},
		"lower case before": {`{"SIGNUPURL":"https://evil.example/","signUpUrl":"https://www.bluetape.com/"}`, "a name differs from signUpUrl only in case"},
		"lower case alone":  {`{"signupurl":"https://www.bluetape.com/"}`, "a name differs from signUpUrl only in case"},
		// encoding/json folds U+017F (long s) to s.
		"long s":               {`{"signUpUrl":"https://www.bluetape.com/","ſignUpUrl":"https://evil.example/"}`, "a name differs from signUpUrl only in case"},
		"other name twice":     {`{"signUpUrl":"https://www.bluetape.com/","a":1,"a":2}`, "a name appears twice in one object"},
		"nested name twice":    {`{"signUpUrl":"https://www.bluetape.com/","x":[{"k":1,"k":2}]}`, "a name appears twice in one object"},
		"number":               {`{"signUpUrl":1}`, "signUpUrl is not a string"},
		"null value":           {`{"signUpUrl":null}`, "signUpUrl is not a string"},
		"object value":         {`{"signUpUrl":{"href":"https://www.bluetape.com/"}}`, "signUpUrl is not a string"},
		"array value":          {`{"signUpUrl":["https://www.bluetape.com/"]}`, "signUpUrl is not a string"},
		"empty value":          {`{"signUpUrl":""}`, "signUpUrl is empty"},
		"invalid UTF-8":        {"{\"signUpUrl\":\"https://www.bluetape.com/\xff\"}", "signUpUrl holds a character that is not visible ASCII"},
		"escaped control byte": {`{"signUpUrl":"https://www.bluetape.com/\u0000"}`, "signUpUrl holds a character that is not visible ASCII"},
		"user info":            {`{"signUpUrl":"https://www.bluetape.com@evil.example/"}`, "signUpUrl has user information"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeSignup([]byte(tc.body), answerKey, answerAccount)
			if err == nil {
				t.Fatalf("got %q; want an error", got)
			}
			if got != "" {
				t.Errorf("got %q beside the error; want nothing", got)
			}
			if !errors.Is(err, ErrInvalidSignup) {
				t.Errorf("error %v does not wrap ErrInvalidSignup", err)
			}
			if want := "invalid signup answer: " + tc.want; err.Error() != want {
				t.Errorf("got  %q\nwant %q", err, want)
			}
			for _, part := range []string{"bluetape.com", "evil", "signupurl", "SIGNUPURL"} {
				if strings.Contains(err.Error(), part) {
					t.Errorf("error %q quotes the body", err)
				}
			}
		})
	}
}

// TestCheckSignupURL pins the URL rule, which is applied to upstream
// answers and to entries read back from a shared cache alike.
func TestCheckSignupURL(t *testing.T) {
	ok := []string{
		"https://www.bluetape.com/signup?id=97bee7a043b58084",
		"http://127.0.0.1:8080/signup?id=1",
		"https://[::1]:8443/s",
		"https://www.bluetape.com/s?q=%zz&k=1", // a query is not checked for escapes
		longURL(2048),
	}
	for _, u := range ok {
		if err := CheckSignupURL(u, answerKey, answerAccount); err != nil {
			t.Errorf("CheckSignupURL(%q) = %v; want nil", u, err)
		}
	}
	bad := map[string]struct{ url, want string }{
		"empty":                 {"", "signUpUrl is empty"},
		"2049 bytes":            {longURL(2049), "signUpUrl is longer than 2048 bytes"},
		"space":                 {"https://www.bluetape.com/a b", "signUpUrl holds a character that is not visible ASCII"},
		"tab":                   {"https://www.bluetape.com/a\tb", "signUpUrl holds a character that is not visible ASCII"},
		"DEL":                   {"https://www.bluetape.com/\x7f", "signUpUrl holds a character that is not visible ASCII"},
		"non-ASCII":             {"https://www.bluetape.com/é", "signUpUrl holds a character that is not visible ASCII"},
		"relative":              {"/signup?id=1", "signUpUrl is not an http or https URL"},
		"scheme-relative":       {"//www.bluetape.com/signup", "signUpUrl is not an http or https URL"},
		"javascript":            {"javascript:alert(1)", "signUpUrl is not an http or https URL"},
		"ftp":                   {"ftp://www.bluetape.com/", "signUpUrl is not an http or https URL"},
		"data":                  {"data:text/html,x", "signUpUrl is not an http or https URL"},
		"opaque":                {"https:www.bluetape.com", "signUpUrl has no host"},
		"no host":               {"https:///signup", "signUpUrl has no host"},
		"port only":             {"https://:443/signup", "signUpUrl has no host"},
		"bad escape in path":    {"https://www.bluetape.com/%zz", "signUpUrl is not a valid URL"},
		"bad host":              {"https://www.bluetape.com\\.evil.example/", "signUpUrl is not a valid URL"},
		"bad port":              {"https://www.bluetape.com:x/", "signUpUrl is not a valid URL"},
		"open bracket":          {"http://[::1/", "signUpUrl is not a valid URL"},
		"user info":             {"https://www.bluetape.com@evil.example/", "signUpUrl has user information"},
		"user and password":     {"https://user:pass@www.bluetape.com/", "signUpUrl has user information"},
		"empty user info":       {"https://@www.bluetape.com/", "signUpUrl has user information"},
		"key in query":          {"https://www.bluetape.com/s?k=" + answerKey, "signUpUrl holds a configured credential"},
		"account in path":       {"https://www.bluetape.com/" + answerAccount + "/s", "signUpUrl holds a configured credential"},
		"key in host":           {"https://" + answerKey + ".evil.example/", "signUpUrl holds a configured credential"},
		"key in fragment":       {"https://www.bluetape.com/#" + answerKey, "signUpUrl holds a configured credential"},
		"key, upper case":       {"https://" + strings.ToUpper(answerKey) + ".evil.example/", "signUpUrl holds a configured credential"},
		"key, percent-encoded":  {"https://www.bluetape.com/s?k=%6b%2d3b9f1d2e8c7a6b5d", "signUpUrl holds a configured credential"},
		"key, upper-case hex":   {"https://www.bluetape.com/s?k=%6B%2D3B9F1D2E8C7A6B5D", "signUpUrl holds a configured credential"},
		"key, encoded twice":    {"https://www.bluetape.com/s?k=%256b-3b9f1d2e8c7a6b5d", "signUpUrl holds a configured credential"},
		"key, after a bad %":    {"https://www.bluetape.com/s?x=%zz&k=%6b-3b9f1d2e8c7a6b5d", "signUpUrl holds a configured credential"},
		"account, path-escape":  {"https://www.bluetape.com/acct%2D77f1", "signUpUrl holds a configured credential"},
		"account, encoded %25s": {"https://www.bluetape.com/s?a=%2561cct-77f1", "signUpUrl holds a configured credential"},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			err := CheckSignupURL(tc.url, answerKey, answerAccount)
			if err == nil {
				t.Fatal("accepted")
			}
			if want := "invalid signup answer: " + tc.want; err.Error() != want {
				t.Errorf("got  %q\nwant %q", err, want)
			}
			if !errors.Is(err, ErrInvalidSignup) {
				t.Errorf("error %v does not wrap ErrInvalidSignup", err)
			}
			if strings.Contains(strings.ToLower(err.Error()), answerKey) || strings.Contains(err.Error(), answerAccount) {
				t.Errorf("error %q holds a credential", err)
			}
			// The same URL in a body is refused the same way.
			body := `{"signUpUrl":` + jsonString(tc.url) + `}`
			if _, err2 := DecodeSignup([]byte(body), answerKey, answerAccount); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("DecodeSignup: %v; want %v", err2, err)
			}
		})
	}
}

// TestCheckSignupURLSecrets checks which secrets count: empty ones are
// not configured ones; each given value counts, the old and new one of a
// rotation alike.
func TestCheckSignupURLSecrets(t *testing.T) {
	const u = "https://www.bluetape.com/signup?id=97bee7a043b58084"
	if err := CheckSignupURL(u); err != nil {
		t.Errorf("no secrets: %v", err)
	}
	if err := CheckSignupURL(u, "", ""); err != nil {
		t.Errorf("empty secrets: %v", err)
	}
	if err := CheckSignupURL(u, "old-key", "97bee7a043b58084"); err == nil {
		t.Error("a URL holding the second secret was accepted")
	}
	if err := CheckSignupURL("https://www.bluetape.com/s?id=1", "1"); err == nil {
		t.Error("a one-character secret in the URL was accepted")
	}
}

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}
