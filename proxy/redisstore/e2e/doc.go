// Package e2e holds process-level tests of shared mode: they build the
// gateway, run replicas of it as processes against a real redis-server
// and a fake BlueTape on loopback, and look at what Redis and the
// replicas' metrics saw. It has no code of its own.
package e2e
