package fdproto

import (
	"errors"
	"strings"
	"testing"
)

func TestParseListenURL(t *testing.T) {
	good := []struct {
		in   string
		want Socket
	}{
		{"tcp://127.0.0.1:8080", Socket{Network: "tcp", Addr: "127.0.0.1:8080"}},
		{"TCP4://0.0.0.0:80", Socket{Network: "tcp4", Addr: "0.0.0.0:80"}},
		{"tcp6://[::1]:8080", Socket{Network: "tcp6", Addr: "[::1]:8080"}},
		{"tcp://[0:0::0001]:08080", Socket{Network: "tcp", Addr: "[::1]:8080"}},
		{"tcp6://[fe80::1%eth0]:80", Socket{Network: "tcp6", Addr: "[fe80::1%eth0]:80"}},
		{"udp://0.0.0.0:9000", Socket{Network: "udp", Addr: "0.0.0.0:9000"}},
		{"udp4://10.0.0.1:0", Socket{Network: "udp4", Addr: "10.0.0.1:0"}},
		{"udp6://[::]:65535", Socket{Network: "udp6", Addr: "[::]:65535"}},
		{"tcp://localhost:80", Socket{Network: "tcp", Addr: "localhost:80"}},
		{"tcp://api-1.example.com:443#web", Socket{Name: "web", Network: "tcp", Addr: "api-1.example.com:443"}},
		{"tcp://127.0.0.1:8080#my web.socket", Socket{Name: "my web.socket", Network: "tcp", Addr: "127.0.0.1:8080"}},
	}
	for _, tt := range good {
		got, err := ParseListenURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseListenURL(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, reason string }{
		{"127.0.0.1:8080", "no scheme"},
		{"http://127.0.0.1:8080", `scheme "http"`},
		{"unix:///tmp/s", `scheme "unix"`},
		{"tcp://", "missing host:port"},
		{"tcp://127.0.0.1", "missing port"},
		{"tcp://127.0.0.1:", "missing port"},
		{"tcp://:8080", "missing host"},
		{"tcp://[]:8080", "missing host"},
		{"tcp://127.0.0.1:http", `port "http" is not a number`},
		{"tcp://127.0.0.1:-1", `port "-1" is not a number`},
		{"tcp://127.0.0.1:+80", `port "+80" is not a number`},
		{"tcp://127.0.0.1:65536", "port 65536 out of range"},
		{"tcp://127.0.0.1:99999999999999999999", "out of range"},
		{"tcp://127.0.0.1:8080/", `unexpected path or query "/"`},
		{"tcp://127.0.0.1:8080/x", "unexpected path"},
		{"tcp://127.0.0.1:8080?name=web", "unexpected path or query"},
		{"tcp://user@127.0.0.1:8080", "user info"},
		{"tcp://::1:8080", "brackets"},
		{"tcp://[127.0.0.1]:8080", "IPv4 address 127.0.0.1 in brackets"},
		{"tcp://[localhost]:8080", "not an IPv6 address"},
		{"tcp4://[::1]:8080", "tcp4 wants an IPv4 address"},
		{"udp6://127.0.0.1:53", "udp6 wants an IPv6 address"},
		{"tcp://256.1.1.1:80", "host"},
		{"tcp://127.000.0.1:80", "host"},
		{"tcp://exa_mple.com:80", "not a host name"},
		{"tcp://-bad.com:80", "starts or ends with '-'"},
		{"tcp://a..b:80", "empty label"},
		{"tcp://" + strings.Repeat("a", 64) + ".com:80", "label longer than 63"},
		{"tcp://127.0.0.1:80#", `name "": empty`},
		{"tcp://127.0.0.1:80#a:b", "contains ':'"},
		{"tcp://127.0.0.1:80#a\nb", "not printable ASCII"},
		{"tcp://127.0.0.1:80#" + strings.Repeat("n", 256), "longer than 255 bytes"},
	}
	for _, tt := range bad {
		_, err := ParseListenURL(tt.in)
		if !errors.Is(err, ErrBadListen) {
			t.Errorf("ParseListenURL(%q): %v, want ErrBadListen", tt.in, err)
			continue
		}
		msg := err.Error()
		quoted := strings.Contains(msg, "\""+tt.in+"\"") || strings.Contains(msg, "\\n") // %q escapes control characters
		if !strings.HasPrefix(msg, "bad listen URL ") || !quoted || !strings.Contains(msg, tt.reason) || strings.Contains(msg, "\n") {
			t.Errorf("ParseListenURL(%q): %q; want one line naming the URL and %q", tt.in, msg, tt.reason)
		}
	}
	// The text people see, pinned once.
	_, err := ParseListenURL("udp://0.0.0.0:70000")
	if want := `bad listen URL "udp://0.0.0.0:70000": port 70000 out of range 0-65535`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestSocketString(t *testing.T) {
	for _, in := range []string{"tcp://127.0.0.1:8080", "udp6://[::1]:53#dns"} {
		s, err := ParseListenURL(in)
		if err != nil || s.String() != in {
			t.Errorf("%q: String() = %q, %v", in, s.String(), err)
		}
	}
}
