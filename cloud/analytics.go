package cloud

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/services/analytics"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
	"github.com/atrium-iot/atrium/services/analytics/sqlitestore"
)

// addAnalytics runs the analytics service (:8003) on its store: SQLite under an
// sqlite:// URL (the default), ClickHouse under -analytics-store=clickhouse://….
func (a *App) addAnalytics(ctx context.Context) error {
	log := a.log.With("service", "analytics")
	var st analytics.Store
	if strings.HasPrefix(a.cfg.AnalyticsStore, "clickhouse://") {
		ch, err := clickhousestore.Open(ctx, a.cfg.AnalyticsStore, clickhousestore.Options{Logger: log, Retention: a.cfg.Retention, RollupRetention: a.cfg.RollupRetention})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		st = ch
	} else {
		path, err := sqlitePath(a.cfg.AnalyticsStore, "analytics")
		if err != nil {
			return fmt.Errorf("-analytics-store: %w", err)
		}
		sq, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Logger: log, Retention: a.cfg.Retention, RollupRetention: a.cfg.RollupRetention})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		st = sq
	}
	a.closers = append(a.closers, st.Close)
	svc := analytics.New(st, a.bus, log, analytics.Options{SensorURL: a.URL("sensor"), HTTPClient: a.upstreamClient(3 * time.Second)})
	return a.serve("analytics", a.cfg.AnalyticsAddr, svc.Handler(), log, svc.Run)
}
