# Varnish doing the gateway's job, for the side-by-side benchmark (bench/run.sh).
# run.sh replaces the @NAME@ placeholders; storage is malloc, threads and
# pinning are set on varnishd's command line there.
vcl 4.1;

import vsthrottle;

backend bluetape {
    .host = "127.0.0.1";
    .port = "@UPSTREAM_PORT@";
}

sub vcl_recv {
    if (req.method != "GET") {
        return (synth(405));
    }
    # Same id rule as nginx's location; nothing else reaches the backend.
    if (req.url !~ "^/customers/[A-Za-z0-9._~-]{1,128}/signup$") {
        return (synth(400));
    }
    # Per-client rate limit, set far above what the benchmark sends.
    if (vsthrottle.is_denied(client.identity, 1000000000, 1s)) {
        return (synth(429));
    }
    set req.url = regsub(req.url, "^/customers/([^/]+)/signup$", "/integration/customer/\1/signup");
    # Skip the built-in vcl_recv (it would pass requests that carry an
    # Authorization header or a cookie).
    return (hash);
}

sub vcl_hash {
    # One object per customer id, whatever the Host header says.
    hash_data(regsub(req.url, "^/integration/customer/([^/]+)/signup$", "\1"));
    return (lookup);
}

sub vcl_backend_fetch {
    # The upstream sees each credential exactly once: the configured one.
    unset bereq.http.X-BlueTape-Key;
    unset bereq.http.X-Integration-AccountId;
    set bereq.http.X-BlueTape-Key = "@API_KEY@";
    set bereq.http.X-Integration-AccountId = "@ACCOUNT_ID@";
    set bereq.http.Content-Type = "application/json";
}

sub vcl_backend_response {
    # BlueTape sends no freshness headers: the gateway's TTLs. grace is the
    # gateway's stale window (GATEWAY_STALE_TTL).
    if (beresp.status == 200) {
        set beresp.ttl = 15m;
        set beresp.grace = 24h;
    } elsif (beresp.status == 404) {
        set beresp.ttl = 30s;
        set beresp.grace = 0s;
    } else {
        set beresp.ttl = 0s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
    }
    return (deliver);
}

sub vcl_synth {
    # Errors in the gateway's JSON form instead of Varnish's HTML page.
    set resp.http.Content-Type = "application/json";
    set resp.body = {"{"code": ""} + resp.status + {"", "reason": ""} + resp.reason + "." + {"""} + "}";
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
