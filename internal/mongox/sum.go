package mongox

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/atrium-iot/atrium/internal/reading"
)

// Sum is a bucket's sum of readings kept in two fields, "sum" and "hsum", the
// parts of reading.SplitSum, so that no $inc of it can overflow: FerretDB
// refuses an $inc whose result is infinite. "sum" only gets values of at most
// 2^996 in magnitude, so it overflows only after more than 2^28 (2.7e8) of
// them in one bucket; "hsum" never. Embed it inline in a bucket's document
// (`bson:",inline"`); a document without hsum, written before the split, reads
// it as 0.
type Sum struct {
	Plain float64 `bson:"sum"`
	Huge  float64 `bson:"hsum"`
}

// SplitSum is the Sum of v alone.
func SplitSum(v float64) Sum {
	plain, huge := reading.SplitSum(v)
	return Sum{Plain: plain, Huge: huge}
}

// Add adds v to s (the plain part saturating, see reading.AddSum).
func (s *Sum) Add(v float64) {
	plain, huge := reading.SplitSum(v)
	s.Plain, s.Huge = reading.AddSum(s.Plain, plain), s.Huge+huge
}

// Total is the whole sum, held within ±math.MaxFloat64 (reading.JoinSum).
func (s Sum) Total() float64 { return reading.JoinSum(s.Plain, s.Huge) }

// Fields are s's fields for an $inc that adds it to a bucket (hsum only when
// not 0), or with all for a $set that replaces a bucket's sum (hsum always, so
// an earlier one is overwritten).
func (s Sum) Fields(all bool) bson.D {
	fields := bson.D{{Key: "sum", Value: s.Plain}}
	if s.Huge != 0 || all {
		fields = append(fields, bson.E{Key: "hsum", Value: s.Huge})
	}
	return fields
}
