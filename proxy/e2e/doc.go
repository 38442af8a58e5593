// Package e2e holds process-level tests of the gateway: they build the
// binary, run it configured by environment variables only, and drive it
// with real signals, real secret files and a fake BlueTape on loopback.
// It has no code of its own.
package e2e
