package gateway

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// serveLocal hands r to the upstream's handler in this process: the shape of
// `atrium -target=all`, where the gateway and the services share one process and a
// round trip over a loopback connection would cost the gateway more CPU than its
// own work (a request and a response written, read and parsed once more). The
// service sees the request as the reverse proxy would send it: hop-by-hop headers
// removed, X-Forwarded-For/-Host/-Proto set by the gateway (whatever the client
// sent in them dropped), the key's name set and the key itself gone (handleUpstream
// did both), ?access_token= taken out of the query. Its answer goes straight to the
// client's connection, streamed as the service writes it.
//
// WebSocket upgrades do not come here: they go through the reverse proxy, which
// ties them to the gateway's life (see handleUpstream).
func (u *upstream) serveLocal(w http.ResponseWriter, r *http.Request) {
	// The header is changed in place: the server took what it needs of the
	// Connection header (close, an HTTP/1.0 keep-alive) when it read the request.
	h := r.Header
	// A client's Connection header may name the key's header: it stays, or the
	// service would take the request for a direct call on its private port.
	keyName := h[keyNameHeader]
	removeHopByHop(h)
	if keyName != nil {
		h[keyNameHeader] = keyName
	}
	delete(h, "Forwarded")
	delete(h, "X-Forwarded-For")
	delete(h, "X-Forwarded-Host")
	delete(h, "X-Forwarded-Proto")
	setForwardedHeaders(h, r)
	if strings.Contains(r.URL.RawQuery, "access_token") {
		r2 := *r
		r2.URL = withoutAccessToken(r.URL)
		r2.RequestURI = r2.URL.RequestURI()
		r = &r2
	}
	u.local.ServeHTTP(w, r)
}

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 that a proxy
// does not forward, as httputil.ReverseProxy lists them.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers from h, and those the Connection
// header names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// withoutAccessToken is u without its access_token query parameter.
func withoutAccessToken(u *url.URL) *url.URL {
	u2 := *u
	q := u2.Query()
	q.Del("access_token")
	u2.RawQuery = q.Encode()
	return &u2
}
