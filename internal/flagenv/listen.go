package flagenv

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// ListenError rewrites err, when it says a listener could not be bound, as one line
// that names the address, the flag that sets it and the flag's variable:
//
//	cannot listen on 127.0.0.1:1883 (-mqtt-addr, $ATRIUM_MQTT_ADDR): bind: address already in use
//
// addrs maps the names of the flags holding listen addresses (without the dash) to
// their values. Any other error, nil included, is returned unchanged.
func ListenError(err error, addrs map[string]string) error {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "listen" {
		return err
	}
	names := make([]string, 0, len(addrs))
	for name := range addrs {
		names = append(names, name)
	}
	slices.Sort(names)
	var flags []string
	addr := ""
	for _, pass := range []func(string, *net.OpError) bool{sameAddr, samePort} {
		for _, name := range names {
			if v := addrs[name]; v != "" && pass(v, oe) {
				flags = append(flags, fmt.Sprintf("-%s, $%s", name, EnvName(name)))
				addr = v
			}
		}
		if len(flags) > 0 {
			break
		}
	}
	if addr == "" && oe.Addr != nil {
		addr = oe.Addr.String()
	}
	msg := "cannot listen on " + addr
	if len(flags) > 0 {
		msg += " (" + strings.Join(flags, "; ") + ")"
	}
	return &listenError{msg: msg + ": " + oe.Err.Error(), err: err}
}

// listenError keeps the original error for errors.Is and errors.As.
type listenError struct {
	msg string
	err error
}

func (e *listenError) Error() string { return e.msg }
func (e *listenError) Unwrap() error { return e.err }

// sameAddr tells whether the listen address value is the one that failed: the same
// text, the same resolved address, or, when the address could not be parsed or
// resolved, the part of it the error names.
func sameAddr(value string, oe *net.OpError) bool {
	if oe.Addr == nil {
		host, port, _ := net.SplitHostPort(value)
		var de *net.DNSError
		var ae *net.AddrError
		switch {
		case errors.As(oe.Err, &de):
			return de.Name == host || de.Name == "tcp/"+port
		case errors.As(oe.Err, &ae):
			return ae.Addr == value || ae.Addr == port
		}
		return false
	}
	if value == oe.Addr.String() {
		return true
	}
	ta, ok := oe.Addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	va, err := net.ResolveTCPAddr("tcp", value)
	if err != nil {
		return false
	}
	return va.Port == ta.Port && (va.IP.Equal(ta.IP) || unspecified(va.IP) && unspecified(ta.IP))
}

// samePort is the fallback when no address matches as a whole (a host name that
// resolves differently on a second look).
func samePort(value string, oe *net.OpError) bool {
	ta, ok := oe.Addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	_, port, err := net.SplitHostPort(value)
	return err == nil && port == strconv.Itoa(ta.Port)
}

func unspecified(ip net.IP) bool { return ip == nil || ip.IsUnspecified() }
