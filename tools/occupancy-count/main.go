// Command occupancy-count measures how well a room's head count can be
// estimated from its sensors, on the UCI Room Occupancy Estimation set (one room,
// seven sensor nodes, counts 0-3): it trains an ordinal logistic count model on
// the days before -split and prints the confusion matrix of the days after, for
// a model that sees each sensor node and for one that sees only the room
// service's per-type series (the mean of the room's sensors of each type).
//
//	go run ./tools/occupancy-count -data DIR/Occupancy_Estimation.csv
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/atrium-iot/atrium/services/room/occupancy"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "occupancy-count:", err)
		os.Exit(1)
	}
}

// maxCount is the largest count of the set.
const maxCount = 3

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("occupancy-count", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "UCI Room Occupancy Estimation CSV (Occupancy_Estimation.csv)")
	split := fs.String("split", "2018-01-01", "train on the rows before this date, test on the rows from it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		return fmt.Errorf("-data is required")
	}
	at, err := time.Parse(time.DateOnly, *split)
	if err != nil {
		return fmt.Errorf("-split: %w", err)
	}
	f, err := os.Open(*data)
	if err != nil {
		return err
	}
	ss, err := occupancy.ReadRoomEstimation(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *data, err)
	}
	var train, test []occupancy.CountSample
	for _, s := range ss {
		if s.Time.Before(at) {
			train = append(train, s)
		} else {
			test = append(test, s)
		}
	}
	if len(train) == 0 || len(test) == 0 {
		return fmt.Errorf("-split %s leaves %d rows to train on and %d to test", *split, len(train), len(test))
	}
	fmt.Fprintf(stdout, "trained on %d rows before %s, tested on %d rows from it\n", len(train), *split, len(test))
	for _, v := range []occupancy.CountView{occupancy.ByNode, occupancy.ByType} {
		m, err := occupancy.TrainCounts(train, v, maxCount)
		if err != nil {
			return err
		}
		c := occupancy.JudgeCounts(m.Estimate(test), test, maxCount)
		exact, occ := c.Accuracy()
		fmt.Fprintf(stdout, "%s: exact count %.2f %%, occupied or not %.2f %%\n", v, 100*exact, 100*occ)
		fmt.Fprintf(stdout, "  actual \\ estimated      0      1      2      3\n")
		for a, row := range c {
			fmt.Fprintf(stdout, "  %d                  ", a)
			for _, n := range row {
				fmt.Fprintf(stdout, " %6d", n)
			}
			fmt.Fprintln(stdout)
		}
	}
	return nil
}
