package proxy

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bluetape/bluetape-gateway/proxy/cache"
)

// testAdminToken is the admin token of the tests' admin handlers.
const testAdminToken = "admin-token-3c1f9e8d7b6a5f4e3d2c1b0a"

func adminToken() string { return testAdminToken }

func newTestAdmin(t *testing.T, token func() string) (string, *cache.Cache) {
	t.Helper()
	c := cache.New(cache.Options{TTL: 15 * time.Minute, MaxEntries: 10})
	srv := httptest.NewServer(Admin(AdminOptions{Gatherer: prometheus.NewRegistry(), Ready: func() bool { return true },
		Cache: LocalCache(c), Token: token, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return srv.URL, c
}

// TestAdminWithoutTokenServesNoActions: without an admin token, the
// admin actions are not served at all, and the rest stays open.
func TestAdminWithoutTokenServesNoActions(t *testing.T) {
	admin, c := newTestAdmin(t, nil)
	c.SetFound("abc", []byte(`{}`))
	wantEachAdminAction(t, admin, []string{"", "Bearer " + testAdminToken}, http.StatusNotFound)
	if c.Len() != 1 {
		t.Error("the entry was evicted")
	}
	assertOpen(t, admin)
}

// adminActions are the requests the admin token guards; the DELETE is of
// an entry the test has cached.
var adminActions = []struct{ method, path string }{
	{http.MethodDelete, "/cache/customers/abc"},
	{http.MethodGet, "/debug/pprof/"},
	{http.MethodGet, "/debug/pprof/profile?seconds=1"},
	{http.MethodGet, "/debug/pprof/heap"},
	{http.MethodGet, "/debug/pprof/symbol"},
}

// wantEachAdminAction sends each admin action with each Authorization
// value of auths and fails the test unless each answers status, with a
// WWW-Authenticate header when status is 401.
func wantEachAdminAction(t *testing.T, admin string, auths []string, status int) {
	t.Helper()
	for _, r := range adminActions {
		for _, auth := range auths {
			resp, body := httpDo(t, r.method, admin+r.path, "Authorization", auth)
			challenge := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != status || (status == http.StatusUnauthorized) != (challenge != "") {
				t.Errorf("%s %s (Authorization %q): %d, WWW-Authenticate %q (%s); want %d",
					r.method, r.path, auth, resp.StatusCode, challenge, body, status)
			}
		}
	}
}

func assertOpen(t *testing.T, admin string) {
	t.Helper()
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/openapi.yaml"} {
		if resp, body := httpDo(t, http.MethodGet, admin+path); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a token: %d %s; want 200", path, resp.StatusCode, body)
		}
	}
}

// TestAdminActionsRequireTheToken checks the admin actions with a token:
// 401 with WWW-Authenticate without it or with another one, served with
// it, and a rotated token in force at once.
func TestAdminActionsRequireTheToken(t *testing.T) {
	var token atomic.Pointer[string]
	token.Store(new(testAdminToken))
	admin, c := newTestAdmin(t, func() string { return *token.Load() })
	c.SetFound("abc", []byte(`{}`))

	wantEachAdminAction(t, admin, []string{"", "Bearer", "Bearer ", "Basic " + testAdminToken, "Bearer " + testAdminToken + "x",
		"Bearer " + testAdminToken[:len(testAdminToken)-1], testAdminToken}, http.StatusUnauthorized)
	if c.Len() != 1 {
		t.Fatal("an unauthorized DELETE evicted the entry")
	}

	auth := []string{"Authorization", "Bearer " + testAdminToken}
	if resp, body := httpDo(t, http.MethodGet, admin+"/debug/pprof/", auth...); resp.StatusCode != http.StatusOK {
		t.Errorf("pprof index with the token: %d %s", resp.StatusCode, body)
	}
	if resp, body := httpDo(t, http.MethodDelete, admin+"/cache/customers/abc", "Authorization", "bearer "+testAdminToken); resp.StatusCode != http.StatusNoContent {
		t.Errorf("DELETE with the token: %d %s; want 204", resp.StatusCode, body)
	}
	for _, q := range []string{"26", "0", "-1", "1e3", "x"} {
		for _, path := range []string{"/debug/pprof/profile", "/debug/pprof/trace", "/debug/pprof/heap"} {
			if resp, body := httpDo(t, http.MethodGet, admin+path+"?seconds="+q, auth...); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s?seconds=%s: %d %s; want 400", path, q, resp.StatusCode, body)
			}
		}
	}
	assertOpen(t, admin)

	const rotated = "admin-token-rotated-0f1e2d3c4b5a"
	token.Store(new(rotated))
	if resp, _ := httpDo(t, http.MethodGet, admin+"/debug/pprof/", auth...); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the rotated-out token: %d; want 401", resp.StatusCode)
	}
	if resp, body := httpDo(t, http.MethodGet, admin+"/debug/pprof/", "Authorization", "Bearer "+rotated); resp.StatusCode != http.StatusOK {
		t.Errorf("the rotated token: %d %s; want 200", resp.StatusCode, body)
	}
}
