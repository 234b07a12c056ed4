package gateway

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/atrium-iot/atrium/internal/flagenv"
)

// KeysCommand is `atrium keys`: it manages the gateway's keys file.
//
//	atrium keys add -name NAME -scopes read,ingest [-keys FILE]   make a key, print it once
//	atrium keys add -name NAME -subject cn:NAME -scopes ingest    a principal known by its client certificate
//	atrium keys list [-keys FILE]                                 names and scopes
//	atrium keys remove -name NAME [-keys FILE]                    revoke a key
//
// Without -keys (or ATRIUM_KEYS) the file is gateway-keys.json under -data-dir, the
// file a gateway started without -keys uses. A running gateway picks up every change
// within a second.
func KeysCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	usage := "usage: atrium keys add|list|remove [-name NAME] [-scopes read,ingest,admin] [-subject SUBJECT] [-keys FILE]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("keys: missing subcommand")
	}
	sub := args[0]
	fs := flag.NewFlagSet("atrium keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	keysFile := fs.String("keys", "", "the gateway's API keys file (default: "+DefaultKeysFile+" under -data-dir)")
	dataDir := fs.String("data-dir", "./data", "data directory of atrium, where the default keys file lives")
	name := fs.String("name", "", "name of the key (who uses it, e.g. dashboard)")
	scopes := fs.String("scopes", "read", "comma-separated scopes: read, ingest, admin (admin implies the others)")
	subject := fs.String("subject", "", "add: a principal known by the subject of its client certificate instead of a key:\nuri:<URI> (or a bare URI such as spiffe://…), dns:<name> or cn:<common name>")
	if err := flagenv.Parse(fs, args[1:], getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("keys: unexpected arguments %q", fs.Args())
	}
	path := *keysFile
	if path == "" {
		path = filepath.Join(*dataDir, DefaultKeysFile)
	}
	switch sub {
	case "add":
		sc, err := ParseScopes(*scopes)
		if err != nil {
			return fmt.Errorf("keys: -scopes: %w", err)
		}
		if *subject != "" {
			if err := AddSubject(path, *name, *subject, sc); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "added principal %q (client certificate %s) with scopes %s to %s\n", *name, *subject, joinScopes(sc), path)
			return nil
		}
		key, err := AddKey(path, *name, sc)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, key)
		fmt.Fprintf(stderr, "added key %q with scopes %s to %s; it is shown only this once\n", *name, joinScopes(sc), path)
		return nil
	case "list":
		keys, err := ReadKeys(path)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.Subject != "" {
				fmt.Fprintf(stdout, "%s\t%s\tsubject %s\n", k.Name, joinScopes(k.Scopes), k.Subject)
				continue
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s…\n", k.Name, joinScopes(k.Scopes), k.SHA256[:12])
		}
		return nil
	case "remove":
		if err := RemoveKey(path, *name); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "removed key %q from %s\n", *name, path)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("keys: unknown subcommand %q", sub)
	}
}

func joinScopes(sc []Scope) string {
	s := make([]string, len(sc))
	for i, x := range sc {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}
