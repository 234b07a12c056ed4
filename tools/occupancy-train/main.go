// Command occupancy-train fits the room service's occupancy models from the UCI
// Occupancy Detection training set and writes them as JSON (the committed
// services/room/occupancy/model.json):
//
//	go run ./tools/occupancy-train -data DIR/datatraining.txt -out services/room/occupancy/model.json
//
// With -test FILE (repeatable) it also prints how the models do on those files
// offline, in process, with and without the light column. With -cv it prints a
// leave-one-day-out cross-validation on the training file, the figure to
// compare candidate features by without looking at the test sets; it judges
// the training file as it is and copies of it with simulated co2 sensor faults.
// -faults N trains also on N such copies, -co2-check drops a co2 stream that
// fails the plausibility check, -timetable adds the room's own timetable and
// -mass-balance the co2 the room gains by the mass balance (candidates).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/atrium-iot/atrium/services/room/occupancy"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "occupancy-train:", err)
		os.Exit(1)
	}
}

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("occupancy-train", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "UCI Occupancy Detection training file (datatraining.txt)")
	out := fs.String("out", "", "where to write the model JSON (- for stdout; empty: do not write)")
	cv := fs.Bool("cv", false, "print a leave-one-day-out cross-validation on the training file, with and without light, with the co2 sensor as it is and with simulated faults")
	var opts occupancy.TrainOptions
	fs.IntVar(&opts.FaultCopies, "faults", 0, "train also on this many copies of the training file with simulated co2 sensor faults")
	fs.BoolVar(&opts.Gated, "gated", false, "count temperature and water content above their baselines only through a recent co2 rise")
	fs.BoolVar(&opts.CO2Check, "co2-check", false, "drop a co2 stream that fails the plausibility check (in training and in the estimator)")
	fs.StringVar(&opts.Timetable, "timetable", "", "add the room's own timetable to the models without light, from this evidence: co2-rise, co2-above, water-rise or estimates")
	fs.IntVar(&opts.TimetableDays, "timetable-days", 0, "days the timetable looks back (0: 7)")
	fs.IntVar(&opts.TimetableWindowMinutes, "timetable-window", 0, "minutes either side of the time of day the timetable reads (0: 30)")
	fs.BoolVar(&opts.MassBalance, "mass-balance", false, "add the co2 the room gains by the mass balance, with the air-change rate from its own decays")
	fs.BoolVar(&opts.MassBalanceWater, "mass-balance-water", false, "add the water the room's air gains by the mass balance, with the same air-change rate")
	var tests files
	fs.Var(&tests, "test", "a UCI Occupancy Detection file to evaluate on, offline (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		return fmt.Errorf("-data is required")
	}
	samples, err := readFile(*data)
	if err != nil {
		return err
	}
	m, err := occupancy.Train(samples, opts)
	if err != nil {
		return err
	}
	b, err := Marshal(m)
	if err != nil {
		return err
	}
	switch *out {
	case "":
	case "-":
		if _, err := stdout.Write(b); err != nil {
			return err
		}
	default:
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			return fmt.Errorf("write model: %w", err)
		}
	}
	if *cv {
		for _, c := range streamSets {
			r, err := occupancy.CrossValidate(samples, c.use, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "leave one day out, %s: score %.2f %% (mean of healthy and faulty co2)\n", c.name, 100*r.Score())
			fmt.Fprintf(stdout, "  co2 as it is: %s\n", r.Healthy)
			for _, d := range slices.Sorted(maps.Keys(r.ByDay)) {
				fmt.Fprintf(stdout, "    %s: %s\n", d, r.ByDay[d])
			}
			fmt.Fprintf(stdout, "  simulated co2 faults (%d copies): %s\n", occupancy.CVFaultCopies, r.Faulty)
		}
	}
	for _, t := range tests {
		ss, err := readFile(t)
		if err != nil {
			return err
		}
		for _, c := range streamSets {
			fmt.Fprintf(stdout, "%s, %s: %s\n", t, c.name, occupancy.Judge(m.Offline(ss, c.use), ss))
		}
	}
	return nil
}

// streamSets are the two ways a test set is replayed: every column, and
// without the light column.
var streamSets = []struct {
	name string
	use  [4]bool
}{{"with light", [4]bool{true, true, true, true}}, {"without light", [4]bool{true, true, true, false}}}

// Marshal writes a model as indented JSON with a final newline.
func Marshal(m *occupancy.Model) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode model: %w", err)
	}
	return append(b, '\n'), nil
}

func readFile(path string) ([]occupancy.Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ss, err := occupancy.ReadUCI(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ss, nil
}
