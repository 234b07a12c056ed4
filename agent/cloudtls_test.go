package agent

import (
	"io"
	"strings"
	"testing"
)

func TestCloudTLSFlags(t *testing.T) {
	cases := []struct {
		args []string
		err  string
	}{
		{[]string{"-cloud-url=https://gw.example", "-cloud-ca=ca.pem", "-cloud-cert=c.pem", "-cloud-key=k.pem"}, ""},
		{[]string{"-cloud-url=https://gw.example", "-cloud-cert=c.pem"}, "go together"},
		{[]string{"-cloud-url=http://gw.example", "-cloud-ca=ca.pem"}, "need an https:// -cloud-url"},
		{[]string{"-cloud-url=http://gw.example", "-cloud-cert=c.pem", "-cloud-key=k.pem"}, "need an https:// -cloud-url"},
	}
	for _, c := range cases {
		_, err := ParseFlags(c.args, func(string) string { return "" }, io.Discard)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%v: %v, want %q", c.args, err, c.err)
		}
	}
}
