package sandbox

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/bluetape/bluetape-gateway/config"
)

func TestStartServesUntilClose(t *testing.T) {
	sb, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	req, err := http.NewRequest(http.MethodGet, sb.BaseURL+"/integration/customer/abc/signup", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-BlueTape-Key", Key)
	req.Header.Set("X-Integration-AccountId", AccountID)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"signUpUrl": "`+URL("abc")+`"}` {
		t.Fatalf("before Close: %d %s", resp.StatusCode, body)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("after Close: %d; want a refused connection", resp.StatusCode)
	}
}

func TestEnvPointsAtTheSandbox(t *testing.T) {
	sb := &Sandbox{BaseURL: "http://127.0.0.1:1/genericBthubService"}
	env := map[string]string{
		config.EnvBaseURL:       "https://api.bluetape.com/genericBthubService",
		config.EnvAPIKey:        "real-key",
		config.EnvAPIKeyFile:    "/secrets/key",
		config.EnvAccountID:     "real-account",
		config.EnvAccountIDFile: "/secrets/account",
		config.EnvCacheTTL:      "1m",
	}
	getenv := sb.Env(func(name string) string { return env[name] })
	want := map[string]string{
		config.EnvBaseURL:       sb.BaseURL,
		config.EnvAPIKey:        Key,
		config.EnvAPIKeyFile:    "",
		config.EnvAccountID:     AccountID,
		config.EnvAccountIDFile: "",
		config.EnvCacheTTL:      "1m",
		config.EnvListenAddr:    "",
	}
	for name, v := range want {
		if got := getenv(name); got != v {
			t.Errorf("%s = %q; want %q", name, got, v)
		}
	}
}

// holdPort listens on addr for the rest of the test if it can; either
// way addr is taken when holdPort returns, by the test or by another
// program.
func holdPort(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Logf("%s is already taken: %v", addr, err)
		return
	}
	t.Cleanup(func() { ln.Close() })
}

// load loads the configuration of the sandbox with env as the
// environment and yaml, when not empty, as the YAML file.
func load(t *testing.T, env map[string]string, yaml string) *config.Config {
	t.Helper()
	file := ""
	if yaml != "" {
		file = filepath.Join(t.TempDir(), "gateway.yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sb := &Sandbox{BaseURL: "http://127.0.0.1:1/genericBthubService"}
	cfg, err := config.Load(sb.Env(func(name string) string { return env[name] }), file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func attrs(kv []any) map[string]any {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestListenersDefaultToLoopback(t *testing.T) {
	holdPort(t, AdminAddr)
	cfg := load(t, nil, "")
	logged := attrs(Listeners(cfg))
	if cfg.ListenAddr != APIAddr {
		t.Errorf("API address %q; want %q", cfg.ListenAddr, APIAddr)
	}
	host, port, err := net.SplitHostPort(cfg.AdminAddr)
	if err != nil || host != "127.0.0.1" || port == "9090" || port == "0" {
		t.Errorf("admin address %q with %s taken; want another 127.0.0.1 port", cfg.AdminAddr, AdminAddr)
	}
	if logged["api"] != cfg.ListenAddr || logged["admin"] != cfg.AdminAddr || logged["admin_moved"] == nil {
		t.Errorf("logged %v; want the addresses and why the admin port moved", logged)
	}
	// The port handed out is free, so the gateway can listen on it.
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		t.Fatalf("listening on the chosen admin address: %v", err)
	}
	ln.Close()
}

func TestListenersAdminMovesOffTheAPIPort(t *testing.T) {
	cfg := load(t, map[string]string{config.EnvListenAddr: AdminAddr}, "")
	logged := attrs(Listeners(cfg))
	if cfg.ListenAddr != AdminAddr || cfg.AdminAddr == AdminAddr || logged["admin_moved"] == nil {
		t.Errorf("API %q, admin %q, logged %v; want the admin listener on another port", cfg.ListenAddr, cfg.AdminAddr, logged)
	}
}

func TestListenersKeepWhatIsSet(t *testing.T) {
	holdPort(t, AdminAddr)
	cases := map[string]struct {
		env              map[string]string
		yaml             string
		wantAPI, wantAdm string
	}{
		"environment": {
			env:     map[string]string{config.EnvListenAddr: ":8081", config.EnvAdminAddr: ":9090"},
			wantAPI: ":8081", wantAdm: ":9090",
		},
		"YAML file": {
			yaml:    "GATEWAY_LISTEN_ADDR: \":8080\"\nGATEWAY_ADMIN_ADDR: \"0.0.0.0:9091\"\n",
			wantAPI: ":8080", wantAdm: "0.0.0.0:9091",
		},
		"environment over YAML file": {
			env:     map[string]string{config.EnvAdminAddr: "127.0.0.1:9092"},
			yaml:    "GATEWAY_ADMIN_ADDR: \":9091\"\n",
			wantAPI: APIAddr, wantAdm: "127.0.0.1:9092",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := load(t, tc.env, tc.yaml)
			logged := attrs(Listeners(cfg))
			if cfg.ListenAddr != tc.wantAPI || cfg.AdminAddr != tc.wantAdm {
				t.Errorf("API %q, admin %q; want %q, %q", cfg.ListenAddr, cfg.AdminAddr, tc.wantAPI, tc.wantAdm)
			}
			if logged["api"] != tc.wantAPI || logged["admin"] != tc.wantAdm || logged["admin_moved"] != nil {
				t.Errorf("logged %v", logged)
			}
		})
	}
}
