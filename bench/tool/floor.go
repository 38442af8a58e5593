package main

import (
	"flag"
	"net/http"

	"github.com/labstack/echo/v4"
)

// floorBody is the floor's constant answer.
var floorBody = []byte(`{"signUpUrl":"https://www.bluetape.com/signup?id=97bee7a043b58084"}`)

// floorCommand is the benchmark's upper bound: a bare Echo server answering
// GET /customers/:id/signup with a constant signup body, with no middleware,
// no cache, no logging and no metrics. Whatever the gateway does on a cache
// hit costs on top of this.
func floorCommand(fs *flag.FlagSet) func() error {
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	return func() error {
		e := echo.New()
		e.HideBanner = true
		e.HidePort = true
		e.GET("/customers/:id/signup", func(c echo.Context) error {
			return c.JSONBlob(http.StatusOK, floorBody)
		})
		return listenAndServe(*addr, e)
	}
}
