// Command floor is the benchmark's upper bound: a bare Echo server answering
// GET /customers/:id/signup with a constant signup body, with no middleware,
// no cache, no logging and no metrics. Whatever the gateway does on a cache hit
// costs on top of this (bench/run.sh).
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
)

var body = []byte(`{"signUpUrl":"https://www.bluetape.com/signup?id=97bee7a043b58084"}`)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.GET("/customers/:id/signup", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, body)
	})
	srv := &http.Server{Addr: *addr, Handler: e, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serving: %v", err)
	}
}
