package bustest

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Vhost makes the RabbitMQ virtual host name with rabbitmqctl, so that a test's
// durable queues are shared with nobody; it gives the user of base (an amqp://
// URL; guest when it names none) every permission there, deletes the vhost when
// the test ends, and returns base moved to it. The error says why the vhost could
// not be made (rabbitmqctl missing, no rights); the caller picks a fallback.
func Vhost(t testing.TB, base, name string) (string, error) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("vhost: %w", err)
	}
	user := "guest"
	if u.User != nil {
		user = u.User.Username()
	}
	if err := rabbitmqctl("add_vhost", name); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if err := rabbitmqctl("delete_vhost", name); err != nil {
			t.Logf("delete vhost: %v", err)
		}
	})
	if err := rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*"); err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

func rabbitmqctl(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmqctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}
