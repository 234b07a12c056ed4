package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/atrium-iot/atrium/gateway"
)

// TestKeyNameCannotBeForged: the upstream learns the caller from KeyNameHeader
// (the sensor service scopes batch ids to it), so whatever a client sends in it
// is replaced by the name of the key it authenticated with: also when it sends
// several, and when its Connection header names KeyNameHeader as hop-by-hop
// (which would have the gateway drop the header, and the service take the
// request for a direct call). Over the network and in-process alike.
func TestKeyNameCannotBeForged(t *testing.T) {
	path, keys := keyset(t, allScopes)
	network, closed, local := map[string]string{}, map[string]string{}, map[string]http.Handler{}
	for _, n := range []string{"sensor", "room", "analytics", "notification"} {
		e := newEcho(t, n)
		network[n], closed[n], local[n] = e.srv.URL, closedURL(t), e.srv.Config.Handler
	}
	shapes := map[string]*gw{
		"network":    startGateway(t, gateway.Options{Upstreams: network, KeysFile: path}),
		"in-process": startGateway(t, gateway.Options{Upstreams: closed, Local: local, KeysFile: path}),
	}
	forged := map[string][][2]string{
		"one":                   {{gateway.KeyNameHeader, "admin"}},
		"several":               {{gateway.KeyNameHeader, "admin"}, {gateway.KeyNameHeader, "reader"}},
		"lower case":            {{"x-atrium-key-name", "admin"}},
		"named hop-by-hop":      {{"Connection", gateway.KeyNameHeader}, {gateway.KeyNameHeader, "admin"}},
		"hop-by-hop, no header": {{"Connection", "keep-alive, " + gateway.KeyNameHeader}},
	}
	for shape, g := range shapes {
		for name, hs := range forged {
			for _, m := range []string{http.MethodGet, http.MethodPost} {
				t.Run(shape+"/"+name+"/"+m, func(t *testing.T) {
					path, body := "/sensors", []byte(nil)
					if m == http.MethodPost {
						path, body = "/sensors/data", []byte(`{"sensor_id":"s1","type":"co2","value":1}`)
					}
					req, err := http.NewRequest(m, g.url+path, bytes.NewReader(body))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Authorization", "Bearer "+keys["ingester"])
					if m == http.MethodGet {
						req.Header.Set("Authorization", "Bearer "+keys["reader"])
					}
					req.Header.Set("Content-Type", "application/json")
					for _, h := range hs {
						req.Header[h[0]] = append(req.Header[h[0]], h[1]) // as sent, not canonicalised
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					raw, _ := io.ReadAll(resp.Body)
					var e echoed
					if resp.StatusCode != 200 || json.Unmarshal(raw, &e) != nil {
						t.Fatalf("%d %s", resp.StatusCode, raw)
					}
					want := "ingester"
					if m == http.MethodGet {
						want = "reader"
					}
					if e.KeyName != want {
						t.Errorf("the service saw key name %q, want %q", e.KeyName, want)
					}
				})
			}
		}
	}
}
