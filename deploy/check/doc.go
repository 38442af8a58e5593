// Package check holds the tests that prove the gateway's container image and
// Kubernetes manifests: every kustomize overlay under deploy/overlays is
// rendered, decoded strictly into the Kubernetes API types, and checked for
// the invariants that real deployments depend on. It has no non-test code.
package check
