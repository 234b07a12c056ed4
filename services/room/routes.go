package room

import "github.com/go-chi/chi/v5"

// routes lists the whole API of the room service.
func (s *Service) routes(r chi.Router) {
	r.Get("/rooms", s.handleRooms())
	r.Post("/rooms", s.handleCreate())
	r.Get("/rooms/{id}", s.handleRoom())
	r.Put("/rooms/{id}", s.handleUpdate(true))
	r.Patch("/rooms/{id}", s.handleUpdate(false))
	r.Delete("/rooms/{id}", s.handleDelete())
	r.Put("/rooms/{id}/sensors/{sensor_id}", s.handleAssign())
	r.Get("/rooms/{id}/metrics", s.handleMetrics())
	r.Get("/rooms/{id}/history", s.handleHistory())
}
