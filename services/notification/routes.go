package notification

import "github.com/go-chi/chi/v5"

// routes lists the whole API of the notification service.
func (s *Service) routes(r chi.Router) {
	r.Get("/rules", s.handleRules())
	r.Post("/rules", s.handleCreateRule())
	r.Get("/rules/{id}", s.handleRule())
	r.Put("/rules/{id}", s.handleUpdateRule())
	r.Delete("/rules/{id}", s.handleDeleteRule())

	r.Get("/alerts", s.handleAlerts())
	r.Get("/alerts/{id}", s.handleAlert())
	r.Post("/alerts/{id}/ack", s.handleAck())

	r.Get("/events", s.handleEvents())
	r.Post("/notifications/send", s.handleSend())
	r.Get("/ws/notifications", s.handleWebSocket())
}
