package manifest

import (
	"strings"
	"testing"
)

func TestDecodeRejects(t *testing.T) {
	cases := map[string]struct {
		in   string
		want string
	}{
		"unknown field": {
			in:   `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"selectr":{}}}`,
			want: `unknown field "selectr"`,
		},
		"unknown kind": {
			in:   `{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"}}`,
			want: "unknown kind batch/v1 Job",
		},
		"wrong version": {
			in:   `{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"h"}}`,
			want: "unknown kind autoscaling/v1 HorizontalPodAutoscaler",
		},
		"bad quantity": {
			in:   `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"name":"c","resources":{"limits":{"memory":"lots"}}}]}}}}`,
			want: "quantities must match",
		},
		"unknown monitoring field": {
			in:   `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"m"},"spec":{"endpoints":[{"port":"admin","scrapePath":"/metrics"}]}}`,
			want: `unknown field "scrapePath"`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v; want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	in := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","namespace":"n"},"spec":{"ports":[{"name":"http","port":8080}]}}`
	o, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.String(), "Service/s"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if o.Namespace != "n" {
		t.Errorf("got namespace %q; want %q", o.Namespace, "n")
	}
}
