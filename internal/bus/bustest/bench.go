package bustest

import (
	"context"
	"fmt"
	"testing"

	"github.com/atrium-iot/atrium/internal/bus"
)

// BenchPublish measures b.Publish of a one-reading sensor.data.received body on
// subjects under "bench.": one publisher after another ("serial"), and eight per
// CPU at once ("parallel"); msgs/s of each. The caller binds a queue to "bench.#"
// so that the messages go somewhere.
func BenchPublish(b *testing.B, bs bus.Bus) {
	body := []byte(`{"batch_id":"bench","site":"s1","readings":[{"sensor_id":"sensor_001","type":"temperature","value":21.5}]}`)
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := bs.Publish(b.Context(), "bench.serial", body); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := bs.Publish(context.Background(), "bench.parallel", body); err != nil {
					panic(fmt.Sprintf("publish: %v", err)) // b.Fatal must not be called here
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
