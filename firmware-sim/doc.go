// Package sim is Atrium's simulated sensor firmware (the atrium-sim program): a fleet
// of devices, each with its own MQTT connection (paho.golang autopaho, reconnecting
// with exponential backoff), publishing a realistic office climate from package
// physics, or replaying recorded data (package replay) with its original timestamps.
//
// # Devices and payloads
//
// Rooms are room-101, room-102, … (capacities 8, 12, 4, 20, 6, 10 in turn); the
// devices of a room are <room>-s1, <room>-s2, …; with -site X every id is prefixed
// "X-". The MQTT client id is the sensor id. Each device has a retained last will
// "offline" on atrium/<room>/<sensor>/status, publishes a retained "online" there on
// every connect and a retained "offline" before a clean disconnect. Devices take the
// Roles in turn:
//
//	s1 climate  JSON   atrium/<room>/<sensor>  {"temperature":…,"humidity":…,"co2":…,"ts":<Unix ms>}
//	s2 presence SenML  atrium/<room>/<sensor>  [{"bn":"<sensor>/","bt":<Unix s>,"n":"occupancy","u":"count","v":…},{"n":"pir","v":…},{"n":"noise","u":"dB","v":…}]
//	s3 light    plain  atrium/<room>/<sensor>/light and …/temperature: one number each, no timestamp
//	s4 air      SenML  co2 (ppm), temperature (Cel), humidity (%RH)
//
// A replayed frame is one SenML pack (or one JSON object with -replay-form json).
//
// # Rounds and time
//
// A round is one frame of every device: round k is stamped -start + k·-interval and
// published at real time k·-interval/-speed after the first (-speed max: no waiting).
// In replay a round is one distinct timestamp of the file. -count stops after N
// rounds, -duration after a wall-clock time; then the devices get -drain to send
// what they still hold. With a -speed above 1 and -start now, timestamps run ahead
// of the wall clock and receivers reject them beyond 5 min: start in the past.
//
// # Queueing
//
// Each device keeps unsent messages in a bounded outbox (-queue). While connected,
// a full outbox makes the producer wait; while disconnected the oldest message is
// dropped (Messages.Overflowed). A device keeps up to -inflight QoS 1/2 publishes in
// flight (default 32, never more than the broker's Receive Maximum from its
// CONNACK), written in the order they were produced and counted in that order as
// their acknowledgements come. Publishes cut by a lost connection are sent again,
// in order and before anything newer, after reconnecting (Messages.Resent: the
// broker may then hold them twice). Over WebSocket a device keeps one in flight.
//
// # Faults
//
// -faults takes name=rate pairs. All decisions come from one random stream seeded by
// -seed, drawn by one goroutine, so a seed, -count and the flags fix every fault.
//
//   - dropout=p: per device and frame, with probability p the device goes silent for
//     3–12 frames, this one included (FaultCounts.Dropouts spells, DropoutFrames frames
//     not produced). It stays connected.
//   - stuck=p: per device and frame, with probability p the frame's values are frozen
//     and repeated by the next 5–20 frames (Stuck spells, StuckFrames repeating frames;
//     the readings are valid and stored).
//   - malformed, spike, skew, duplicate: one draw per frame picks at most one of them
//     (so their rates must sum to at most 1):
//   - malformed=p: the frame's (first) message is made undecodable: JSON and SenML cut
//     in half, a plain number replaced by "n/a" (Malformed messages: dead-lettered).
//   - spike=p: one reading of a known type gets a value outside its plausible range
//     (above the maximum by half the range or more, or negative for occupancy and pir)
//     (Spikes readings: rejected by the agent, dead-lettered).
//   - skew=p: the frame's timestamp is shifted: half the time 1–120 s into the past
//     (still valid and stored), half the time to 10–60 min after the later of the
//     simulated and the wall clock (Skews frames, SkewFuture of them: all their
//     readings rejected as more than 5 min in the future).
//   - duplicate=p: the message is sent twice, same topic and payload (Duplicates extra
//     copies: every reading of the copy is a duplicate for the cloud).
//   - reconnect=p: per round, with probability p every device's connection is cut at
//     once (the broker sends the last wills) and all reconnect (ReconnectStorms); at
//     -speed max the next round waits until all are back.
//
// Skew and duplicate do not apply to plain messages (they carry no timestamp; a frame
// that draws them is sent unchanged and not counted).
//
// # Counts
//
// Summary.Expect is computed as each message is acknowledged, with package reading's
// rules and the wall clock: Stored readings are valid and new by (sensor, type,
// timestamp), Rejected fail validation, Malformed messages cannot be decoded, and
// Duplicates are valid readings whose identity this device already published.
// With nothing failed and no resend, Expect.Malformed = Faults.Malformed, Rejected =
// Spikes + readings of SkewFuture frames, and Duplicates = readings of duplicated
// frames. Messages.Produced = Published + Failed.
package sim
