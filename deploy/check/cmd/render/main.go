// Command render prints the objects a kustomization renders, as
// "kubectl kustomize DIR" would, for tools that read manifests:
//
//	go run ./cmd/render ../overlays/production | kube-score score -
package main

import (
	"fmt"
	"os"

	"github.com/bluetape/bluetape-gateway/deploy/check/manifest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: render DIR")
		os.Exit(2)
	}
	out, err := manifest.RenderYAML(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
