// Command bench-tool holds the programs the load benchmark (bench/run.sh)
// runs besides the servers it compares, one subcommand each:
//
//	bench-tool floor [flags]     a bare Echo handler: the upper bound
//	bench-tool upstream [flags]  a stand-in for BlueTape's signup endpoint
//	bench-tool issuer [flags]    a stand-in for the Kubernetes API server as an OIDC issuer
//	bench-tool stampede [flags]  many requests for one cold id at the same instant
//	bench-tool flood [flags]     one request for each of many new ids
//
// `bench-tool <subcommand> -h` lists a subcommand's flags. The servers run
// until SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"
)

// A command defines its flags on fs and returns what runs it once they are
// parsed.
type command struct {
	name    string
	summary string
	setup   func(fs *flag.FlagSet) func() error
}

var commands = []command{
	{"floor", "a bare Echo handler answering a constant signup body", floorCommand},
	{"upstream", "a stand-in for BlueTape's signup endpoint, and an OTLP trace sink", upstreamCommand},
	{"issuer", "a stand-in for the Kubernetes API server as an OIDC issuer", issuerCommand},
	{"stampede", "many concurrent requests for one id that is not cached yet", stampedeCommand},
	{"flood", "one request for each of many ids never asked before", floodCommand},
}

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		usage()
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == os.Args[1] })
	if i < 0 {
		usage()
	}
	c := commands[i]
	log.SetPrefix("bench-tool " + c.name + ": ")
	fs := flag.NewFlagSet("bench-tool "+c.name, flag.ExitOnError)
	run := c.setup(fs)
	fs.Parse(os.Args[2:])
	if fs.NArg() > 0 {
		log.Fatalf("unexpected arguments %q", fs.Args())
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bench-tool <subcommand> [flags]")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", c.name, c.summary)
	}
	os.Exit(2)
}

// serve answers on ln with h until SIGINT or SIGTERM, then lets the requests
// in progress finish (for 2 s at most).
func serve(ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// listenAndServe listens on the TCP address addr and serves h there (serve).
func listenAndServe(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serve(ln, h)
}

// writeJSON answers 200 with v encoded as JSON, of the given content type.
func writeJSON(w http.ResponseWriter, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	_ = json.NewEncoder(w).Encode(v)
}
