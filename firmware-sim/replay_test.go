package sim_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	sim "github.com/atrium-iot/atrium/firmware-sim"
)

func TestReplayOverMQTT(t *testing.T) {
	tests := []struct {
		file      string
		form      string
		messages  int // one per frame
		readings  int
		devices   int
		blank     int
		topic     string // of the first message
		payload   string // of the first message (exact)
		lastTopic string
	}{
		{
			file: "generic.csv", form: "senml", messages: 6, readings: 9, devices: 3, blank: 1,
			topic:   "atrium/lab-1/lab-t1",
			payload: `[{"bn":"lab-t1/","bt":1772442000,"n":"temperature","u":"Cel","v":21.5},{"n":"humidity","u":"%RH","v":40.2}]`,
		},
		{
			file: "uci_occupancy_detection.txt", form: "json", messages: 240, readings: 720, devices: 2,
			topic:   "atrium/uci-od-room/uci-od-s1",
			payload: `{"temperature":23.18,"humidity":27.272,"light":426,"co2":721.25,"humidity_ratio":0.00479298817650529,"ts":1423072260000}`,
		},
		{
			file: "uci_room_occupancy_estimation.csv", form: "senml", messages: 1200, readings: 2550, devices: 8,
			topic:   "atrium/uci-roe-room/uci-roe-s1",
			payload: `[{"bn":"uci-roe-s1/","bt":1513939781,"n":"temperature","u":"Cel","v":24.94},{"n":"light","u":"lx","v":121},{"n":"sound","u":"V","v":0.08}]`,
		},
		{
			file: "uci_room_occupancy_estimation_blanked.csv", form: "senml", messages: 960, readings: 2000, devices: 8, blank: 40,
			topic:   "atrium/uci-roe-room/uci-roe-s1",
			payload: `[{"bn":"uci-roe-s1/","bt":1513946031,"n":"temperature","u":"Cel","v":25.75},{"n":"light","u":"lx","v":158},{"n":"sound","u":"V","v":0.72}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			addr := startBroker(t, "")
			sub := subscribe(t, addr)
			sum := run(t, newSim(t, "-broker", addr, "-replay", filepath.Join("testdata", tt.file), "-replay-form", tt.form, "-speed", "max"))
			if sum.Mode != "replay" || sum.Devices != tt.devices || sum.Messages.Published != tt.messages || sum.Readings != tt.readings {
				t.Errorf("mode %s devices %d published %d readings %d, want replay %d %d %d",
					sum.Mode, sum.Devices, sum.Messages.Published, sum.Readings, tt.devices, tt.messages, tt.readings)
			}
			if sum.Replay == nil || sum.Replay.BlankCells != tt.blank {
				t.Errorf("replay counts %+v, want %d blank cells", sum.Replay, tt.blank)
			}
			// Recorded data is in the past: every reading valid and new.
			if sum.Expect.Stored != tt.readings || sum.Expect.Rejected != 0 || sum.Expect.Duplicates != 0 {
				t.Errorf("expect %+v, want all %d stored", sum.Expect, tt.readings)
			}
			got := sub.waitData(t, tt.messages)
			if len(got) != tt.messages {
				t.Errorf("received %d, want %d", len(got), tt.messages)
			}
			// One device's messages arrive in order; find this one's first.
			for _, m := range got {
				if m.topic == tt.topic {
					if m.payload != tt.payload {
						t.Errorf("first payload on %s\n got %s\nwant %s", tt.topic, m.payload, tt.payload)
					}
					break
				}
			}
			dec := decodeAll(t, got, time.Now())
			if dec.expect != sum.Expect {
				t.Errorf("decoded %+v, summary %+v", dec.expect, sum.Expect)
			}
		})
	}
	t.Run("faults apply to replays too, with -count", func(t *testing.T) {
		addr := startBroker(t, "")
		sub := subscribe(t, addr)
		sum := run(t, newSim(t, "-broker", addr, "-replay", filepath.Join("testdata", "uci_room_occupancy_estimation.csv"),
			"-speed", "max", "-count", "100", "-seed", "5", "-faults", "spike=0.05,malformed=0.05,duplicate=0.05"))
		if sum.Rounds != 100 || sum.Frames != 800 {
			t.Errorf("rounds %d frames %d, want 100 and 800", sum.Rounds, sum.Frames)
		}
		if sum.Messages.Published != 800+sum.Faults.Duplicates || sum.Expect.Malformed != sum.Faults.Malformed {
			t.Errorf("published %d with %d duplicates; expect %+v faults %+v", sum.Messages.Published, sum.Faults.Duplicates, sum.Expect, sum.Faults)
		}
		dec := decodeAll(t, sub.waitData(t, sum.Messages.Published), time.Now())
		if dec.expect != sum.Expect || dec.expect.Rejected != sum.Faults.Spikes {
			t.Errorf("decoded %+v, summary %+v, spikes %d", dec.expect, sum.Expect, sum.Faults.Spikes)
		}
	})
	t.Run("paced replay follows the recorded gaps", func(t *testing.T) {
		addr := startBroker(t, "")
		// generic.csv spans 09:00:00 → 09:03:00.25 before going back: 180.25 s at speed 1000 ≈ 180 ms.
		sum := run(t, newSim(t, "-broker", addr, "-replay", filepath.Join("testdata", "generic.csv"), "-speed", "1000"))
		if d, err := time.ParseDuration(sum.Elapsed); err != nil || d < 170*time.Millisecond {
			t.Errorf("elapsed %s, want at least 170ms", sum.Elapsed)
		}
	})
	t.Run("unknown layout", func(t *testing.T) {
		cfg, err := sim.ParseFlags([]string{"-replay", filepath.Join("testdata", "README.md")}, func(string) string { return "" }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sim.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "not a known layout") {
			t.Errorf("err %v, want an unknown layout", err)
		}
	})
}
