package cloud

// listenAddrs maps the listen-address flag of every part -target runs to its value,
// for flagenv.ListenError.
func (c Config) listenAddrs() map[string]string {
	all := map[string]string{
		"sensor": c.SensorAddr, "room": c.RoomAddr, "analytics": c.AnalyticsAddr,
		"notification": c.NotifyAddr, "gateway": c.GatewayAddr,
	}
	targets, err := c.targets()
	if err != nil {
		return nil
	}
	out := make(map[string]string, len(targets))
	for _, p := range targets {
		out[p.name+"-addr"] = all[p.name]
	}
	return out
}
