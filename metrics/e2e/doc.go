// Package e2e tests the gateway as a process, through the tools that
// read it in production: it builds the binary, runs it on loopback, and
// checks its /metrics with promtool, a real Prometheus server scraping it,
// and its output for leaked credentials. It holds tests only.
package e2e
