package gatewaytest

import (
	"io"
	"net/http"
	"testing"
)

// Do sends a request without a body through c, with the header pairs
// given (name, value, name, value...), and returns the answer with its
// body read and closed. A transport error fails the test.
func Do(t testing.TB, c *http.Client, method, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// Bearer returns the Authorization header pair for token, or no pair when
// token is empty.
func Bearer(token string) []string {
	if token == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + token}
}
