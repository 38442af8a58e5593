// Package gatewaytest provides test support for the gateway's packages: a
// settable clock, a log buffer safe for concurrent writes, bounded waits,
// files written for a test, a Secret volume laid out as the kubelet mounts
// one, and the gateway built and run as a process on loopback ports.
//
// It is imported by tests only; the gateway binary does not depend on it.
// Like net/http/httptest, it is a normal package so that the tests of every
// package in the module, the root package's included, can share it.
package gatewaytest
