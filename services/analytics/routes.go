package analytics

import "github.com/go-chi/chi/v5"

// routes lists the whole API of the analytics service.
func (s *Service) routes(r chi.Router) {
	r.Get("/analytics/summary", s.handleSummary())
	r.Get("/analytics/trends", s.handleTrends())
	r.Post("/analytics/reports", s.handleCreateReport())
	r.Get("/analytics/reports", s.handleReports())
	r.Get("/analytics/reports/{id}", s.handleReport())
}
