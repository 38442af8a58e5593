package identity_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/identity"
)

// This example shows the gateway's authentication decision with a
// Verifier beside the static tokens of a callers file.
func Example() {
	v, err := identity.New(identity.Options{
		Issuer:        "https://kubernetes.default.svc.cluster.local",
		Audience:      "bluetape-gateway",
		CAFile:        "", // in a pod: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
		AuthTokenFile: "", // in a pod: /var/run/secrets/kubernetes.io/serviceaccount/token
		// OnFetch counts failed fetches in
		// bluetape_gateway_jwks_fetch_errors_total.
		OnFetch: func(error) {},
		Logger:  slog.Default(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// In main, the key set is loaded in the background:
	//	g.Go(func() error { return v.Run(ctx) })
	// and /readyz answers 503 until v.Ready().
	var registry *callers.Registry // nil without a callers file

	authenticate := func(header string) (name string, status int, wwwAuthenticate string) {
		tok, ok := callers.BearerToken(header)
		if !ok {
			return "", http.StatusUnauthorized, "Bearer"
		}
		if !identity.IsJWT(tok) {
			if registry != nil {
				if c, ok := registry.Authenticate(tok); ok {
					return c.Name, http.StatusOK, ""
				}
			}
			return "", http.StatusUnauthorized, `Bearer error="invalid_token"`
		}
		id, err := v.Verify(context.Background(), tok)
		if errors.Is(err, identity.ErrInvalidToken) {
			return "", http.StatusUnauthorized, `Bearer error="invalid_token"`
		}
		if registry == nil {
			// Rate-limit bucket id.Caller, label callers.Unregistered.
			return id.Caller, http.StatusOK, ""
		}
		c, ok := registry.BySubject(id.Subject)
		if !ok {
			return "", http.StatusForbidden, ""
		}
		return c.Name, http.StatusOK, ""
	}
	fmt.Println(authenticate(""))
	fmt.Println(authenticate("Bearer not-a-jwt"))
	// Output:
	//  401 Bearer
	//  401 Bearer error="invalid_token"
}
