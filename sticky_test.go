//go:build linux

package sockshare_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
)

// stickyClients returns n client source addresses in 127.0.0.0/8.
func stickyClients(n int) []net.IP {
	ips := make([]net.IP, n)
	for i := range ips {
		ips[i] = net.IPv4(127, 1, byte(i/250), byte(i%250+1))
	}
	return ips
}

// TestSticky: under sticky, every connection from one client address
// reaches one worker, the slot the Maglev table names (so master and
// kernel dispatch agree); when one slot's worker is disconnected, only its
// clients move. Under both dispatch modes.
func TestSticky(t *testing.T) {
	for _, v := range []variant{{"master", "sticky", sockshare.DispatchMaster}, {"kernel", "sticky", sockshare.DispatchKernel}} {
		v.run(t, func(t *testing.T) {
			t.Parallel() // own cluster and address; counts no descriptor
			c := startCluster(t, sockshare.Config{Workers: 3, Policy: "sticky", Dispatch: v.dispatch}, "http")
			slotOf := map[string]int{}
			for _, w := range c.m.Workers() {
				slotOf[strconv.Itoa(w.ID)] = w.Slot
			}
			table, err := policy.NewMaglev([]bool{true, true, true}, 0)
			if err != nil {
				t.Fatal(err)
			}
			ips := stickyClients(128)
			first := map[string]int{}
			perSlot := make([]int, 3)
			for _, ip := range ips {
				for k := range 3 {
					r := getFrom(ip, c.addr, "/")
					if r.err != nil || r.status != 200 {
						t.Fatalf("%v: %+v", ip, r)
					}
					slot := slotOf[r.worker]
					if k == 0 {
						first[ip.String()] = slot
						perSlot[slot]++
						a, _ := netip.AddrFromSlice(ip.To4())
						if want := table.Slot(policy.HashIP(a)); slot != want {
							t.Fatalf("%v reached slot %d; the table says %d", ip, slot, want)
						}
					} else if slot != first[ip.String()] {
						t.Fatalf("%v reached slot %d, then %d", ip, first[ip.String()], slot)
					}
				}
			}
			t.Logf("128 clients per slot: %v", perSlot)
			// Slot 2 leaves; its clients move, nobody else's.
			var w2 sockshare.WorkerInfo
			for _, w := range c.m.Workers() {
				if w.Slot == 2 {
					w2 = w
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.m.Disconnect(ctx, w2.ID); err != nil {
				t.Fatal(err)
			}
			moved := 0
			for _, ip := range ips {
				r := getFrom(ip, c.addr, "/")
				if r.err != nil || r.status != 200 {
					t.Fatalf("%v after slot 2 left: %+v", ip, r)
				}
				slot := slotOf[r.worker]
				was := first[ip.String()]
				if was != 2 && slot != was {
					t.Fatalf("%v moved from slot %d to %d when slot 2 left", ip, was, slot)
				}
				if was == 2 {
					moved++
				}
			}
			t.Logf("slot 2 left: %d of its clients moved, no other client did", moved)
		})
	}
}

// TestStickyUDP: under kernel dispatch datagrams are sticky by client
// address too; under master dispatch sticky falls back to reuseport (one
// flow, one worker) with one fallback event.
func TestStickyUDP(t *testing.T) {
	for _, v := range []variant{{"master", "sticky", sockshare.DispatchMaster}, {"kernel", "sticky", sockshare.DispatchKernel}} {
		v.run(t, func(t *testing.T) {
			t.Parallel() // own cluster and address; counts no descriptor
			c := startCluster(t, sockshare.Config{Workers: 2, Policy: "sticky", Dispatch: v.dispatch}, "udpecho")
			fallbacks := udpCount(c, sockshare.EventFallback)
			if v.dispatch == sockshare.DispatchMaster {
				if fallbacks != 1 {
					t.Fatalf("%d fallback events; want 1\n%s", fallbacks, c.eventLog())
				}
			} else if fallbacks != 0 {
				t.Fatalf("%d fallback events under kernel dispatch; want 0\n%s", fallbacks, c.eventLog())
			}
			// Every flow from one address (different ports) to one worker
			// under kernel dispatch.
			for _, ip := range stickyClients(16) {
				seen := map[string]bool{}
				for range 3 {
					conn, err := net.DialUDP("udp", &net.UDPAddr{IP: ip}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(c.addr)))
					if err != nil {
						t.Fatal(err)
					}
					id := ""
					buf := make([]byte, 256)
					for try := 0; try < 5 && id == ""; try++ {
						conn.Write([]byte("x"))
						conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
						if n, err := conn.Read(buf); err == nil {
							id, _, _ = strings.Cut(string(buf[:n]), " ")
						}
					}
					conn.Close()
					if id == "" {
						t.Fatalf("%v: no answer", ip)
					}
					seen[id] = true
				}
				if v.dispatch == sockshare.DispatchKernel && len(seen) != 1 {
					t.Fatalf("%v: flows answered by workers %v; want one", ip, seen)
				}
			}
		})
	}
}
