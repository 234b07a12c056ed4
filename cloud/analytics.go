package cloud

import (
	"context"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
	"github.com/atrium-iot/atrium/services/analytics/sqlitestore"
)

// addAnalytics runs the analytics service (:8003) on its store: SQLite under an
// sqlite:// URL (the default), ClickHouse under -analytics-store=clickhouse://….
func (a *App) addAnalytics(ctx context.Context) error {
	log := a.log.With("service", "analytics")
	st, err := openStore(a, "-analytics-store", a.cfg.AnalyticsStore, "analytics", strings.HasPrefix(a.cfg.AnalyticsStore, "clickhouse://"),
		func(url string) (analytics.Store, error) {
			return clickhousestore.Open(ctx, url, clickhousestore.Options{Logger: log, Tiered: a.cfg.keep()})
		},
		func(path string) (analytics.Store, error) {
			return sqlitestore.Open(ctx, path, sqlitestore.Options{Settings: sqlitex.Settings{Logger: log}, Tiered: a.cfg.keep()})
		})
	if err != nil {
		return err
	}
	svc := analytics.New(st, a.bus, log, analytics.Options{SensorURL: a.URL("sensor"), HTTPClient: a.upstreamClient(3 * time.Second)})
	return a.serve("analytics", a.cfg.AnalyticsAddr, svc.Handler(), log, svc.Run)
}
