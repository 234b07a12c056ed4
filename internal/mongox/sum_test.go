package mongox

import (
	"math"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestSum(t *testing.T) {
	var s Sum
	for _, v := range []float64{1.7e308, 1.7e308, -1e308, 42} {
		s.Add(v)
	}
	if s.Plain != 42 || s.Huge == 0 {
		t.Errorf("Sum = %+v, want the huge values in Huge alone", s)
	}
	if got, want := s.Total(), math.MaxFloat64; got != want {
		t.Errorf("Total = %v, want %v (held at the largest double)", got, want)
	}
	if got := SplitSum(5).Fields(false); len(got) != 1 || got[0].Key != "sum" || got[0].Value != 5.0 {
		t.Errorf("Fields of a plain sum for $inc = %v, want sum alone", got)
	}
	if got := SplitSum(5).Fields(true); len(got) != 2 || got[1].Key != "hsum" || got[1].Value != 0.0 {
		t.Errorf("Fields for $set = %v, want sum and hsum 0", got)
	}
	if got := SplitSum(1.7e308).Fields(false); len(got) != 2 || got[0].Value != 0.0 || got[1].Value == 0.0 {
		t.Errorf("Fields of a huge value = %v, want it in hsum", got)
	}
}

// TestSumInline: a bucket document written before the split (no hsum) reads
// Huge as 0, and a Sum embedded inline keeps the two field names.
func TestSumInline(t *testing.T) {
	type doc struct {
		N   int64 `bson:"n"`
		Sum Sum   `bson:",inline"`
	}
	var old doc
	raw, err := bson.Marshal(bson.D{{Key: "n", Value: int64(2)}, {Key: "sum", Value: 9.5}})
	if err != nil {
		t.Fatal(err)
	}
	if err := bson.Unmarshal(raw, &old); err != nil || old.N != 2 || old.Sum != (Sum{Plain: 9.5}) {
		t.Fatalf("old document = %+v, %v", old, err)
	}
	raw, err = bson.Marshal(doc{N: 1, Sum: SplitSum(1.7e308)})
	if err != nil {
		t.Fatal(err)
	}
	var m bson.M
	if err := bson.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["hsum"]; !ok || m["sum"] != 0.0 {
		t.Errorf("document %v, want top-level sum and hsum", m)
	}
}
