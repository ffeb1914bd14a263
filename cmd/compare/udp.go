package main

// The UDP workloads: an echo worker that prefixes every answer with its
// id, and a client of f flows (connected UDP sockets, so one 4-tuple each)
// with w datagrams in flight per flow. "udp" is c flows of one datagram
// each; "udp1" is a single flow with c in flight, the case SO_REUSEPORT's
// hash cannot spread.

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/sockshare/sockshare"
)

func isUDP(workload string) bool { return workload == "udp" || workload == "udp1" }

// serveUDP echoes "<worker id>\n" + the datagram until SIGTERM.
func serveUDP(ctx context.Context) int {
	pc, err := sockshare.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
		return 2
	}
	go func() {
		<-ctx.Done()
		pc.Close() // ends ReadFrom: UDP has nothing in flight to drain
	}()
	out := make([]byte, 0, 2048)
	out = append(strconv.AppendInt(out, int64(sockshare.WorkerID()), 10), '\n')
	head := len(out)
	buf := make([]byte, 2048)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return 0
			}
			continue
		}
		out = append(out[:head], buf[:n]...)
		_, _ = pc.WriteTo(out, addr)
	}
}

// udpFlow is one connected UDP socket with up to window datagrams in
// flight, each carrying its sequence number.
type udpFlow struct {
	c      *client // for counters, budget and times
	window int
}

func (f *udpFlow) run() {
	c := f.c
	conn, err := net.DialUDP("udp", nil, c.raddr.(*net.UDPAddr))
	if err != nil {
		c.errs[classify(err)]++
		return
	}
	defer conn.Close()
	sent := make([]time.Time, f.window) // by seq % window; zero when not in flight
	seqs := make([]uint64, f.window)
	var next uint64
	out := make([]byte, 16)
	buf := make([]byte, 2048)
	inflight := 0
	send := func() bool {
		slot := int(next % uint64(f.window))
		if !sent[slot].IsZero() {
			return false // that slot's datagram is still out
		}
		binary.BigEndian.PutUint64(out, next)
		sent[slot], seqs[slot] = time.Now(), next
		next++
		if _, err := conn.Write(out); err != nil {
			c.errs[classify(err)]++
			sent[slot] = time.Time{}
			return false
		}
		inflight++
		return true
	}
	for c.requests < c.budget && time.Now().Before(c.end) {
		for inflight < f.window && send() {
		}
		if inflight == 0 {
			time.Sleep(time.Millisecond) // every send failed: do not spin
			continue
		}
		conn.SetReadDeadline(time.Now().Add(c.timeout))
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Whatever is out is lost (or the worker is gone).
				c.errs[errTimeout] += int64(inflight)
				clear(sent)
				inflight = 0
				continue
			}
			c.errs[classify(err)]++
			time.Sleep(time.Millisecond)
			continue
		}
		nl := -1
		for i := range n {
			if buf[i] == '\n' {
				nl = i
				break
			}
		}
		if nl < 0 || n-nl-1 < 8 {
			c.errs[errOther]++
			continue
		}
		worker, _ := atoi(buf[:nl])
		seq := binary.BigEndian.Uint64(buf[nl+1:])
		slot := int(seq % uint64(f.window))
		if sent[slot].IsZero() || seqs[slot] != seq {
			continue // a late answer to a datagram already counted lost
		}
		c.lat = append(c.lat, int64(time.Since(sent[slot])))
		sent[slot] = time.Time{}
		inflight--
		c.requests++
		wc := c.count(worker)
		wc.Requests++
		if !c.seen(worker) {
			wc.Connections++ // flows this worker answered at least once
		}
	}
}

// seen records that the current flow reached worker and reports whether
// it had before.
func (c *client) seen(worker int) bool {
	for _, w := range c.flowWorkers {
		if w == worker {
			return true
		}
	}
	c.flowWorkers = append(c.flowWorkers, worker)
	return false
}
