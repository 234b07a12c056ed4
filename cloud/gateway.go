package cloud

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/atrium-iot/atrium/gateway"
)

// addGateway runs the API gateway (:8000) in front of the services: the local ones
// when they run in this process (served in-process, see gateway.Options.Local),
// else the -X-url flags. Without -keys it uses
// gateway-keys.json under -data-dir, made with one admin key on the first start; that
// key is logged once, then only its hash is kept.
func (a *App) addGateway(ctx context.Context) error {
	log := a.log.With("service", "gateway")
	keys := a.cfg.Keys
	if keys == "" {
		keys = filepath.Join(a.cfg.DataDir, gateway.DefaultKeysFile)
		key, created, err := gateway.EnsureAdminKey(keys)
		if err != nil {
			return err
		}
		if created {
			log.Warn("created an admin API key; it is shown only this once: keep it, or add keys with `atrium keys add`",
				"key", key, "keys_file", keys)
		}
	}
	upstreams, local := map[string]string{}, map[string]http.Handler{}
	for _, part := range []string{"sensor", "room", "analytics", "notification"} {
		upstreams[part] = a.URL(part)
		if s, ok := a.servers[part]; ok {
			local[part] = s.Handler()
		}
	}
	gw, err := gateway.New(log, gateway.Options{
		Upstreams:   upstreams,
		Local:       local,
		KeysFile:    keys,
		RateLimit:   a.cfg.RateLimit,
		RateBurst:   a.cfg.RateBurst,
		CORSOrigins: strings.Split(a.cfg.CORSOrigins, ","),
		MaxBody:     a.cfg.MaxBody,
		UpstreamTLS: a.upstreamTLS,
	})
	if err != nil {
		return err
	}
	return a.serve("gateway", a.cfg.GatewayAddr, gw.Handler(), log, gw.Run)
}
