package sensor

import "github.com/go-chi/chi/v5"

// routes lists the whole API of the sensor service.
func (s *Service) routes(r chi.Router) {
	r.Post("/sensors/data", s.handleIngest())
	r.Get("/sensors", s.handleSensors())
	r.Get("/sensors/{id}", s.handleSensor())
	r.Get("/sensors/{id}/data", s.handleReadings())
}
