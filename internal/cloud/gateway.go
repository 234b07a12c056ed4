package cloud

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/atrium-iot/atrium/gateway"
)

// addGateway runs the API gateway (:8000) in front of the services: the local ones
// when they run in this process, else the -X-url flags. Without -keys it uses
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
	gw, err := gateway.New(log, gateway.Options{
		Upstreams: map[string]string{
			"sensor":       a.URL("sensor"),
			"room":         a.URL("room"),
			"analytics":    a.URL("analytics"),
			"notification": a.URL("notification"),
		},
		KeysFile:    keys,
		RateLimit:   a.cfg.RateLimit,
		RateBurst:   a.cfg.RateBurst,
		CORSOrigins: strings.Split(a.cfg.CORSOrigins, ","),
		MaxBody:     a.cfg.MaxBody,
	})
	if err != nil {
		return err
	}
	return a.serve("gateway", a.cfg.GatewayAddr, gw.Handler(), log, gw.Run)
}
