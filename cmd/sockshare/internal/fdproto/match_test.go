package fdproto

import (
	"errors"
	"maps"
	"net"
	"strings"
	"testing"
)

func tcpFD(fd int, name, network, addr string) InheritedFD {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		panic(err)
	}
	return InheritedFD{FD: fd, Name: name, Network: network, Addr: a}
}

func udpFD(fd int, name, network, addr string) InheritedFD {
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		panic(err)
	}
	return InheritedFD{FD: fd, Name: name, Network: network, Addr: a}
}

func mustParse(t *testing.T, urls ...string) []Socket {
	t.Helper()
	socks := make([]Socket, len(urls))
	for i, u := range urls {
		s, err := ParseListenURL(u)
		if err != nil {
			t.Fatal(err)
		}
		socks[i] = s
	}
	return socks
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name      string
		listens   []string
		inherited []InheritedFD
		want      map[int]int
		wantErr   error
		errHas    string
	}{
		{name: "nothing inherited", listens: []string{"tcp://127.0.0.1:80"}, want: map[int]int{}},
		{
			name:    "by address, in any order",
			listens: []string{"udp://127.0.0.1:53", "tcp://127.0.0.1:80"},
			inherited: []InheritedFD{
				tcpFD(3, "unknown", "tcp4", "127.0.0.1:80"),
				udpFD(4, "unknown", "udp4", "127.0.0.1:53"),
			},
			want: map[int]int{0: 1, 1: 0},
		},
		{
			name:      "by name, whatever the address",
			listens:   []string{"tcp://127.0.0.1:8080#web"},
			inherited: []InheritedFD{tcpFD(3, "web", "tcp6", "[::]:80")},
			want:      map[int]int{0: 0},
		},
		{
			name:    "a name among several takes the socket of its network",
			listens: []string{"udp://0.0.0.0:53#dns", "tcp://0.0.0.0:53#dns"},
			inherited: []InheritedFD{
				tcpFD(3, "dns", "tcp4", "0.0.0.0:53"),
				udpFD(4, "dns", "udp4", "0.0.0.0:53"),
			},
			want: map[int]int{0: 1, 1: 0},
		},
		{
			name:      "a name not inherited falls back to the address",
			listens:   []string{"tcp://127.0.0.1:80#web"},
			inherited: []InheritedFD{tcpFD(3, "unknown", "tcp4", "127.0.0.1:80")},
			want:      map[int]int{0: 0},
		},
		{
			name:      "tcp 0.0.0.0 takes a dual-stack [::]",
			listens:   []string{"tcp://0.0.0.0:80"},
			inherited: []InheritedFD{tcpFD(3, "x", "tcp6", "[::]:80")},
			want:      map[int]int{0: 0},
		},
		{
			name:      "udp [::] takes 0.0.0.0",
			listens:   []string{"udp://[::]:53"},
			inherited: []InheritedFD{udpFD(3, "x", "udp4", "0.0.0.0:53")},
			want:      map[int]int{0: 0},
		},
		{
			name:      "host name resolved",
			listens:   []string{"tcp4://localhost:80"},
			inherited: []InheritedFD{tcpFD(3, "x", "tcp4", "127.0.0.1:80")},
			want:      map[int]int{0: 0},
		},
		{
			name:      "listen left for the caller to bind",
			listens:   []string{"tcp://127.0.0.1:80", "tcp://127.0.0.1:81"},
			inherited: []InheritedFD{tcpFD(3, "x", "tcp4", "127.0.0.1:81")},
			want:      map[int]int{1: 0},
		},
		{
			name:      "tcp4 does not take tcp6",
			listens:   []string{"tcp4://0.0.0.0:80"},
			inherited: []InheritedFD{tcpFD(3, "x", "tcp6", "[::]:80")},
			wantErr:   ErrUnclaimed, errHas: `fd 3 "x" tcp6 [::]:80`,
		},
		{
			name:      "port 0 matches no address",
			listens:   []string{"tcp://127.0.0.1:0"},
			inherited: []InheritedFD{tcpFD(3, "x", "tcp4", "127.0.0.1:0")},
			wantErr:   ErrUnclaimed,
		},
		{
			name:      "another IP",
			listens:   []string{"tcp://127.0.0.1:80"},
			inherited: []InheritedFD{tcpFD(3, "x", "tcp4", "127.0.0.2:80")},
			wantErr:   ErrUnclaimed,
		},
		{
			name:      "udp does not take tcp",
			listens:   []string{"udp://127.0.0.1:80"},
			inherited: []InheritedFD{tcpFD(3, "x", "tcp4", "127.0.0.1:80")},
			wantErr:   ErrUnclaimed,
		},
		{
			name:    "every unclaimed socket named",
			listens: []string{"tcp://127.0.0.1:80"},
			inherited: []InheritedFD{
				tcpFD(3, "web", "tcp4", "127.0.0.1:80"),
				udpFD(4, "metrics", "udp4", "0.0.0.0:9100"),
				{FD: 5, Name: "fifo"},
			},
			wantErr: ErrUnclaimed,
			errHas:  `fdproto: inherited socket matches no listen URL: fd 4 "metrics" udp4 0.0.0.0:9100; fd 5 "fifo" (not an inet or unix socket)`,
		},
		{
			name:      "a name of another network",
			listens:   []string{"tcp://0.0.0.0:53#dns"},
			inherited: []InheritedFD{udpFD(3, "dns", "udp4", "0.0.0.0:53")},
			wantErr:   ErrMismatch,
			errHas:    `listen tcp://0.0.0.0:53#dns, inherited fd 3 "dns" udp4 0.0.0.0:53`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Match(mustParse(t, tt.listens...), tt.inherited)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Match: %v, %v; want an error wrapping %v containing %q", got, err, tt.wantErr, tt.errHas)
				}
				return
			}
			if err != nil || !maps.Equal(got, tt.want) {
				t.Fatalf("Match = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
