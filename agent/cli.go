package agent

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/atrium-iot/atrium/agent/decode"
	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/broker/credentials"
	"github.com/atrium-iot/atrium/internal/flagenv"
)

// Run is the whole `atrium-agent` program: main only calls it.
//
//	atrium-agent [flags]                          run the agent
//	atrium-agent devices add -id ID               add a device, print its password once
//	atrium-agent devices remove -id ID            remove a device
//	atrium-agent spool dead-letters [-limit N]    list dead letters
//	atrium-agent spool requeue [-id N,...]        decode dead letters again; valid ones go to the spool
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "devices":
			return runDevices(args[1:], getenv, stdout, stderr)
		case "spool":
			return runSpool(ctx, args[1:], getenv, stdout, stderr)
		}
	}
	cfg, err := ParseFlags(args, getenv, stderr)
	log, err := cfg.Start("atrium-agent", err, stdout, stderr)
	if log == nil {
		return err
	}
	a, err := New(ctx, cfg, log)
	if err != nil {
		return flagenv.ListenError(err, map[string]string{
			"mqtt-addr": cfg.MQTTAddr, "tls-addr": cfg.TLSAddr, "ws-addr": cfg.WSAddr, "http-addr": cfg.HTTPAddr,
		})
	}
	return a.Run(ctx)
}

func runDevices(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove") {
		return errors.New("usage: atrium-agent devices add|remove -id ID [-credentials FILE]")
	}
	fs := flag.NewFlagSet("atrium-agent devices "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "", "device id (its sensor_id and MQTT username)")
	file := fs.String("credentials", "./data/agent/credentials.json", "devices' credentials file")
	if err := flagenv.Parse(fs, args[1:], getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *id == "" {
		return errors.New("devices: -id is required")
	}
	if args[0] == "remove" {
		if err := credentials.Remove(*file, *id); err != nil {
			return fmt.Errorf("devices remove: %w", err)
		}
		fmt.Fprintf(stdout, "removed device %s from %s\n", *id, *file)
		return nil
	}
	pw, err := credentials.Add(*file, *id)
	if err != nil {
		return fmt.Errorf("devices add: %w", err)
	}
	fmt.Fprintf(stdout, "device %s added to %s\nMQTT username: %s\nMQTT password: %s\n(the password is shown only now; only its hash is stored)\n", *id, *file, *id, pw)
	return nil
}

func runSpool(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "dead-letters" && args[0] != "requeue") {
		return errors.New("usage: atrium-agent spool dead-letters|requeue [-spool FILE]")
	}
	fs := flag.NewFlagSet("atrium-agent spool "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("spool", "./data/agent/spool.db", "the spool's bbolt file (stop the agent first: bbolt allows one process)")
	limit := fs.Int("limit", 1000, "most dead letters to list or requeue")
	site := fs.String("site", defaultSite(), "site stamped on requeued readings")
	if err := flagenv.Parse(fs, args[1:], getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	s, err := spool.Open(*path, spool.Options{})
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	defer s.Close()
	dls, err := s.DeadLetters(*limit)
	if err != nil {
		return err
	}
	if args[0] == "dead-letters" {
		enc := json.NewEncoder(stdout)
		for _, d := range dls {
			_ = enc.Encode(map[string]any{"id": d.ID, "at": d.At.UTC().Format(time.RFC3339), "topic": d.Topic, "batch": d.Batch, "reason": d.Reason, "payload": string(d.Payload)})
		}
		return nil
	}
	return requeue(ctx, s, dls, *site, stdout)
}

// requeue decodes dead letters again with today's rules and clock: those that now
// decode go to the spool, the others stay dead letters.
func requeue(ctx context.Context, s *spool.Spool, dls []spool.DeadLetter, site string, stdout io.Writer) error {
	var ids []uint64
	var data [][]byte
	for _, d := range dls {
		var rs [][]byte
		if d.Batch != "" { // a reading the cloud refused: its JSON as it was
			rs = [][]byte{d.Payload}
		} else {
			res, err := decode.Decode(d.Topic, d.Payload, site, time.Now())
			if err != nil || res.Status != nil || len(res.Invalid) > 0 {
				continue // still not usable: it stays a dead letter
			}
			for _, r := range res.Readings {
				rs = append(rs, r.AppendJSON(nil))
			}
		}
		ids = append(ids, d.ID)
		data = append(data, rs...)
	}
	if len(ids) == 0 {
		fmt.Fprintf(stdout, "requeued 0 of %d dead letters\n", len(dls))
		return nil
	}
	if err := s.Append(ctx, data); err != nil {
		return fmt.Errorf("requeue: %w", err)
	}
	if _, err := s.TakeDeadLetters(ctx, ids); err != nil {
		return fmt.Errorf("requeue: %w", err)
	}
	fmt.Fprintf(stdout, "requeued %d of %d dead letters (%d readings)\n", len(ids), len(dls), len(data))
	return nil
}
