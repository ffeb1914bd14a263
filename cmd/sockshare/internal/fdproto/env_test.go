package fdproto

import (
	"slices"
	"strings"
	"testing"
)

func TestWorkerEnv(t *testing.T) {
	socks := []Socket{
		{Name: "web", Network: "tcp", Addr: "127.0.0.1:8080"},
		{Network: "udp", Addr: "0.0.0.0:9000"},
		{Network: "tcp6", Addr: "[::1]:8443"},
		{Network: "tcp4", Addr: "0.0.0.0:80"},
		{Name: "dns", Network: "udp6", Addr: "[2001:db8::1]:53"},
	}
	want := []string{
		"LISTEN_FDS=5",
		"LISTEN_FDNAMES=web:udp-0.0.0.0-9000:tcp6-__1-8443:tcp4-0.0.0.0-80:dns",
		"EINHORN_FD_COUNT=5",
		"EINHORN_FD_0=3", "EINHORN_FD_1=4", "EINHORN_FD_2=5", "EINHORN_FD_3=6", "EINHORN_FD_4=7",
		"EINHORN_FDS=3 4 5 6 7",
		"SERVER_STARTER_PORT=127.0.0.1:8080=3;u9000=4;[::1]:8443=5;80=6;u[2001:db8::1]:53=7",
		"SOCKSHARE_WORKER_ID=12",
		"SOCKSHARE_SLOT=2",
	}
	if got := WorkerEnv(socks, 12, 2); !slices.Equal(got, want) {
		t.Errorf("WorkerEnv:\n got %q\nwant %q", got, want)
	}
	if got, want := WorkerEnv(nil, 1, 0), []string{"SOCKSHARE_WORKER_ID=1", "SOCKSHARE_SLOT=0"}; !slices.Equal(got, want) {
		t.Errorf("WorkerEnv without sockets: %q, want %q", got, want)
	}
	for _, kv := range WorkerEnv(socks, 1, 0) {
		if strings.HasPrefix(kv, EnvListenPID+"=") {
			t.Errorf("WorkerEnv sets %s", kv)
		}
	}
}

func TestFDName(t *testing.T) {
	tests := []struct {
		s    Socket
		want string
	}{
		{Socket{Name: "web", Network: "tcp", Addr: "127.0.0.1:1"}, "web"},
		{Socket{Name: "a:b\tc\u00e9", Network: "tcp", Addr: "127.0.0.1:1"}, "a_b_c__"},
		{Socket{Network: "tcp", Addr: "[::]:80"}, "tcp-__-80"},
		{Socket{Network: "udp6", Addr: "[fe80::1%eth0]:80"}, "udp6-fe80__1%eth0-80"},
		{Socket{Name: strings.Repeat("n", 300)}, strings.Repeat("n", 255)},
	}
	for _, tt := range tests {
		if got := tt.s.FDName(); got != tt.want {
			t.Errorf("%+v.FDName() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestStripEnv(t *testing.T) {
	env := []string{
		"PATH=/bin",
		"LISTEN_FDS=2", "LISTEN_PID=1", "LISTEN_FDNAMES=a:b",
		"EINHORN_FD_COUNT=9", "EINHORN_FD_0=3", "EINHORN_FD_8=11", "EINHORN_FDS=3 4",
		"SERVER_STARTER_PORT=80=3",
		"SOCKSHARE_WORKER_ID=4", "SOCKSHARE_SLOT=1",
		"NOTIFY_SOCKET=@x", "LISTEN_FDSX=kept", "HOME=/root", "NOEQUALS",
	}
	orig := slices.Clone(env)
	want := []string{"PATH=/bin", "NOTIFY_SOCKET=@x", "LISTEN_FDSX=kept", "HOME=/root", "NOEQUALS"}
	if got := StripEnv(env); !slices.Equal(got, want) {
		t.Errorf("StripEnv: %q, want %q", got, want)
	}
	if !slices.Equal(env, orig) {
		t.Error("StripEnv modified its argument")
	}
	// What WorkerEnv sets, StripEnv removes.
	if got := StripEnv(WorkerEnv([]Socket{{Network: "tcp", Addr: "127.0.0.1:1"}}, 1, 0)); len(got) != 0 {
		t.Errorf("StripEnv(WorkerEnv(...)) left %q", got)
	}
}
