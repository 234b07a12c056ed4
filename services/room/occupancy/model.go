package occupancy

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"slices"
)

// Logistic is a logistic regression over standardised features:
// p = 1 / (1 + exp(-(Intercept + Σ Weights[i] · (x[i] − Mean[i]) / Scale[i]))).
type Logistic struct {
	Name      string    `json:"name"`
	Features  []string  `json:"features"`
	Mean      []float64 `json:"mean"`
	Scale     []float64 `json:"scale"`
	Weights   []float64 `json:"weights"`
	Intercept float64   `json:"intercept"`
	// Samples is how many training minutes it was fitted on; TrainAccuracy its
	// accuracy on them at p ≥ 0.5.
	Samples       int     `json:"samples"`
	TrainAccuracy float64 `json:"train_accuracy"`

	fs []Feature
}

// Model is the set of logistic models, one per set of present inputs.
type Model struct {
	// Source names the data the models were trained from.
	Source string `json:"source"`
	// TrainOptions is how the models were trained; CO2Check also tells the
	// estimator to drop a co2 stream that fails the plausibility check.
	TrainOptions
	Models []*Logistic `json:"models"`
	// Stage1 is the first stage of a timetable from estimates
	// (TimetableEstimates).
	Stage1 *Model `json:"stage1,omitempty"`

	byName map[string]*Logistic
}

// model is the model of the present streams, nil when there is none.
func (m *Model) model(present [4]bool) *Logistic { return m.byName[ModelName(present)] }

//go:embed model.json
var modelJSON []byte

// Default is the committed model (model.json).
func Default() *Model {
	m, err := Parse(modelJSON)
	if err != nil {
		panic(fmt.Sprintf("occupancy: committed model.json: %v", err))
	}
	return m
}

// Parse reads a model file and checks it against the features of this package.
func Parse(b []byte) (*Model, error) {
	var m Model
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("occupancy: parse model: %w", err)
	}
	if err := m.index(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Model) index() error {
	m.byName = map[string]*Logistic{}
	for _, lm := range m.Models {
		n := len(lm.Features)
		if len(lm.Mean) != n || len(lm.Scale) != n || len(lm.Weights) != n {
			return fmt.Errorf("occupancy: model %s: %d features but %d means, %d scales, %d weights", lm.Name, n, len(lm.Mean), len(lm.Scale), len(lm.Weights))
		}
		lm.fs = make([]Feature, n)
		for i, name := range lm.Features {
			k := slices.IndexFunc(Features, func(f Feature) bool { return f.Name == name })
			if k < 0 {
				return fmt.Errorf("occupancy: model %s: unknown feature %q", lm.Name, name)
			}
			lm.fs[i] = Features[k]
		}
		m.byName[lm.Name] = lm
	}
	if m.Stage1 != nil {
		return m.Stage1.index()
	}
	return nil
}

// Predict is the probability of occupancy the model gives a row.
func (lm *Logistic) Predict(r *Row) float64 {
	z := lm.Intercept
	for i, f := range lm.fs {
		z += lm.Weights[i] * (f.f(&r.x) - lm.Mean[i]) / lm.Scale[i]
	}
	return sigmoid(z)
}

// prob is the probability the model gives a vector of its features.
func (lm *Logistic) prob(x []float64) float64 {
	z := lm.Intercept
	for i := range x {
		z += lm.Weights[i] * (x[i] - lm.Mean[i]) / lm.Scale[i]
	}
	return sigmoid(z)
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}
