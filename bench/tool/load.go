package main

import (
	"flag"
	"time"
)

// loadFlags are the flags of the load generators (stampede, flood): what
// they send requests to, and how many.
type loadFlags struct {
	target  *string
	path    *string
	n       *int
	timeout *time.Duration
}

func defineLoadFlags(fs *flag.FlagSet, n int, nUsage string) loadFlags {
	return loadFlags{
		target:  fs.String("target", "http://127.0.0.1:8080", "proxy base URL"),
		path:    fs.String("path", "/customers/%s/signup", "request path; %s is replaced by the id"),
		n:       fs.Int("n", n, nUsage),
		timeout: fs.Duration("timeout", 10*time.Second, "deadline for each answer"),
	}
}
