package main

// The load generator runs in a child process of its own (this binary,
// re-run with COMPARE_LOAD set), so that its CPU time is measured apart
// from the master's, which lives in the compare process.
//
// It speaks HTTP/1.1 by hand over raw TCP: one fixed request per kind,
// written from a preallocated slice; responses parsed only as far as the
// status code, X-Worker and Content-Length, into one reused buffer per
// connection. Nothing per request touches the heap apart from the latency
// sample.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const envLoad = "COMPARE_LOAD"

// loadConfig is what the compare process asks of the load generator.
type loadConfig struct {
	Addr        string        `json:"addr"`
	Workload    string        `json:"workload"`
	Conns       int           `json:"conns"`
	Duration    time.Duration `json:"duration"`
	Rate        float64       `json:"rate"` // requests/s, open loop; 0 = closed loop
	Seed        uint64        `json:"seed"`
	Timeout     time.Duration `json:"timeout"`      // per request
	MaxRequests int64         `json:"max_requests"` // safety bound over the whole run
	Sources     int           `json:"sources"`      // > 0: bind each connection to the next of this many source addresses
}

// maxSources is the largest -sources: 127.0.1.1 to 127.0.254.254.
const maxSources = 254 * 254

// sourceIP is the i-th client source address, from 127.0.1.1 on (not
// 127.0.0.x, so none coincides with the server's 127.0.0.1). Every
// address of 127.0.0.0/8 is local on Linux, so a client may bind any.
func sourceIP(i int) net.IP {
	return net.IPv4(127, 0, byte(1+i/254), byte(1+i%254))
}

// Error kinds, in report order.
const (
	errRefused = iota
	errReset
	errTimeout
	errEOF
	errOther
	numErrKinds
)

var errKindNames = [numErrKinds]string{"refused", "reset", "timeout", "eof", "other"}

func classify(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return errReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errEOF
	}
	return errOther
}

// workerCount is what the client saw of one worker.
type workerCount struct {
	Requests    int64 `json:"requests"`
	Connections int64 `json:"connections"`
}

// loadResult is the load generator's answer, as JSON on its stdout.
type loadResult struct {
	Requests  int64                  `json:"requests"`
	Errors    map[string]int64       `json:"errors"`
	Elapsed   time.Duration          `json:"elapsed"`
	Unsent    int64                  `json:"unsent"` // open loop: arrivals due before the end that never started
	P50       time.Duration          `json:"p50"`
	P90       time.Duration          `json:"p90"`
	P99       time.Duration          `json:"p99"`
	Max       time.Duration          `json:"max"`
	PerWorker map[string]workerCount `json:"per_worker"` // by X-Worker value; "?" when missing
	Sources   []sourceCount          `json:"sources,omitempty"`
	Sched     schedSample            `json:"sched"` // the load generator's own scheduler counters, at its end
}

// sourceCount is what one client source address saw: its connections
// by the worker that answered them.
type sourceCount struct {
	Addr      string           `json:"addr"`
	PerWorker map[string]int64 `json:"per_worker"`
}

// loadMain is the load generator process: config in the environment,
// result on stdout.
func loadMain(spec string) int {
	var cfg loadConfig
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "compare: load generator: bad %s: %v\n", envLoad, err)
		return 2
	}
	res, err := generate(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: load generator: %v\n", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// Requests, prebuilt. Host is required by HTTP/1.1.
var (
	reqKeepAlive = []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	reqClose     = []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
	reqSleep     = []byte("GET /work?sleep_ms=20 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	reqSpin      = []byte("GET /work?spin_ms=5 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	// churn: short connections, 0.5% of which spin 10 ms of CPU.
	reqCloseSpin = []byte("GET /work?spin_ms=10 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
)

func generate(cfg loadConfig) (*loadResult, error) {
	var raddr net.Addr
	var ip net.IP
	goroutines, window := cfg.Conns, 1
	switch cfg.Workload {
	case "short", "keepalive", "slow", "churn":
		a, err := net.ResolveTCPAddr("tcp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		raddr, ip = a, a.IP
	case "udp", "udp1":
		a, err := net.ResolveUDPAddr("udp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		raddr, ip = a, a.IP
		if cfg.Workload == "udp1" {
			goroutines, window = 1, cfg.Conns
		}
	default:
		return nil, fmt.Errorf("unknown workload %q", cfg.Workload)
	}
	if !ip.IsLoopback() {
		return nil, fmt.Errorf("refusing to load %s: only loopback addresses", cfg.Addr)
	}
	if cfg.Conns < 1 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("bad config: %+v", cfg)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Sources < 0 || cfg.Sources > maxSources || cfg.Sources > 0 && isUDP(cfg.Workload) {
		return nil, fmt.Errorf("bad sources %d for %s", cfg.Sources, cfg.Workload)
	}
	var srcNext atomic.Int64 // the next source address, round robin over every connection
	budget := cfg.MaxRequests / int64(goroutines)
	if budget <= 0 {
		budget = 1
	}

	start := time.Now()
	end := start.Add(cfg.Duration)
	var seq atomic.Int64 // open loop: next arrival number
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / cfg.Rate)
		if interval <= 0 {
			interval = 1
		}
	}

	clients := make([]*client, goroutines)
	var wg sync.WaitGroup
	for i := range clients {
		c := &client{
			raddr:    raddr,
			close:    cfg.Workload == "short" || cfg.Workload == "churn",
			slow:     cfg.Workload == "slow" || cfg.Workload == "churn",
			sources:  cfg.Sources,
			srcNext:  &srcNext,
			rng:      rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
			buf:      make([]byte, 4096),
			timeout:  cfg.Timeout,
			lat:      make([]int64, 0, 1024),
			budget:   budget,
			start:    start,
			end:      end,
			interval: interval,
			seq:      &seq,
		}
		if cfg.Sources > 0 {
			c.bySrc = map[[2]int]int64{}
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			if isUDP(cfg.Workload) {
				(&udpFlow{c: c, window: window}).run()
			} else {
				c.run()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &loadResult{Errors: map[string]int64{}, Elapsed: elapsed, PerWorker: map[string]workerCount{}}
	var lat []int64
	var errs [numErrKinds]int64
	for _, c := range clients {
		res.Requests += c.requests
		lat = append(lat, c.lat...)
		for k, n := range c.errs {
			errs[k] += n
		}
		for id, wc := range c.workers {
			if wc.Requests == 0 && wc.Connections == 0 {
				continue
			}
			key := "?"
			if id > 0 {
				key = fmt.Sprint(id)
			}
			acc := res.PerWorker[key]
			acc.Requests += wc.Requests
			acc.Connections += wc.Connections
			res.PerWorker[key] = acc
		}
	}
	for k, n := range errs {
		res.Errors[errKindNames[k]] = n
	}
	if cfg.Sources > 0 {
		bySrc := make([]map[string]int64, cfg.Sources)
		for _, c := range clients {
			for k, n := range c.bySrc {
				if bySrc[k[0]] == nil {
					bySrc[k[0]] = map[string]int64{}
				}
				key := "?"
				if k[1] > 0 {
					key = fmt.Sprint(k[1])
				}
				bySrc[k[0]][key] += n
			}
		}
		for i, m := range bySrc {
			if m != nil {
				res.Sources = append(res.Sources, sourceCount{Addr: sourceIP(i).String(), PerWorker: m})
			}
		}
	}
	if interval > 0 {
		due := int64(cfg.Duration / interval)
		var started int64
		for _, c := range clients {
			started += c.started
		}
		res.Unsent = max(0, due-started)
	}
	slices.Sort(lat)
	res.P50 = time.Duration(PercentileSorted(lat, 50))
	res.P90 = time.Duration(PercentileSorted(lat, 90))
	res.P99 = time.Duration(PercentileSorted(lat, 99))
	res.Max = time.Duration(PercentileSorted(lat, 100))
	res.Sched = procSched(0)
	return res, nil
}

// client is one connection slot of the generator, run by one goroutine.
type client struct {
	raddr   net.Addr // *net.TCPAddr, or *net.UDPAddr for udpFlow
	close   bool     // one request per connection
	slow    bool     // the slow mix (with close: churn's)
	sources int      // > 0: bind each connection to a source address
	srcNext *atomic.Int64
	rng     *rand.Rand
	timeout time.Duration
	budget  int64

	start, end time.Time
	interval   time.Duration // open loop when > 0
	seq        *atomic.Int64

	conn   net.Conn
	worker int              // X-Worker of conn once known, else 0
	src    int              // the source address index of conn
	bySrc  map[[2]int]int64 // connections by (source index, worker)
	buf    []byte
	r, w   int // unread bytes are buf[r:w]

	requests int64
	started  int64 // open loop: arrivals taken before the end
	errs     [numErrKinds]int64
	lat      []int64       // nanoseconds
	workers  []workerCount // by worker id; index 0 for a missing X-Worker

	flowWorkers []int // udpFlow: the workers that answered this flow
}

func (c *client) run() {
	defer c.drop()
	for c.requests < c.budget {
		var due time.Time
		now := time.Now()
		if !now.Before(c.end) {
			return
		}
		if c.interval > 0 {
			// Open loop: arrival k is due at start + k·interval whether
			// or not an earlier one has finished; latency counts from
			// then, so time spent queued behind slow requests shows.
			k := c.seq.Add(1) - 1
			due = c.start.Add(time.Duration(k) * c.interval)
			if !due.Before(c.end) {
				return
			}
			c.started++
			if d := due.Sub(now); d > 0 {
				time.Sleep(d)
			}
		} else {
			due = now
		}
		if err := c.do(); err != nil {
			c.errs[classify(err)]++
			c.drop()
			if errors.Is(err, syscall.ECONNREFUSED) {
				time.Sleep(time.Millisecond) // do not spin on a closed port
			}
			continue
		}
		c.requests++
		c.lat = append(c.lat, int64(time.Since(due)))
		if c.close {
			c.closeAfterReply() // not part of the latency
		}
	}
}

func (c *client) request() []byte {
	switch {
	case c.close && c.slow:
		if c.rng.IntN(1000) < 5 {
			return reqCloseSpin
		}
		return reqClose
	case c.close:
		return reqClose
	case c.slow:
		switch n := c.rng.IntN(100); {
		case n < 5:
			return reqSleep
		case n == 5:
			return reqSpin
		}
	}
	return reqKeepAlive
}

// do sends one request and reads its response, dialing first if needed.
func (c *client) do() error {
	if c.conn == nil {
		var conn net.Conn
		var err error
		if c.sources > 0 {
			c.src = int((c.srcNext.Add(1) - 1) % int64(c.sources))
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(c.src)}, Control: bindNoPort}
			conn, err = d.Dial("tcp", c.raddr.String())
		} else {
			conn, err = net.DialTCP("tcp", nil, c.raddr.(*net.TCPAddr))
		}
		if err != nil {
			return err
		}
		c.conn, c.worker, c.r, c.w = conn, 0, 0, 0
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	if _, err := c.conn.Write(c.request()); err != nil {
		return err
	}
	status, worker, err := c.readResponse()
	if err != nil {
		return err
	}
	if c.worker == 0 {
		c.worker = worker
		c.count(worker).Connections++
		if c.bySrc != nil {
			c.bySrc[[2]int{c.src, worker}]++
		}
	}
	if status != 200 {
		return fmt.Errorf("status %d", status)
	}
	c.count(worker).Requests++
	return nil
}

// closeAfterReply ends a Connection: close exchange. It waits for the
// server's FIN before closing, so that the server, not the client, holds
// the TIME_WAIT and the client does not run out of ephemeral ports.
func (c *client) closeAfterReply() {
	if c.conn != nil {
		_, _ = c.conn.Read(c.buf[:1])
		c.drop()
	}
}

func (c *client) count(worker int) *workerCount {
	if worker < 0 || worker > 1<<20 {
		worker = 0
	}
	if worker >= len(c.workers) {
		c.workers = slices.Grow(c.workers, worker+1-len(c.workers))[:worker+1]
	}
	return &c.workers[worker]
}

func (c *client) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

var (
	errMalformed = errors.New("malformed response")
	headerEnd    = []byte("\r\n\r\n")
)

// readResponse reads one response and returns its status code and
// X-Worker (0 when absent). The body is discarded; Content-Length is
// required, which the compare worker always sends.
func (c *client) readResponse() (status, worker int, err error) {
	var head []byte
	for {
		if i := bytes.Index(c.buf[c.r:c.w], headerEnd); i >= 0 {
			head = c.buf[c.r : c.r+i+2] // keep the last header's CRLF
			c.r += i + 4
			break
		}
		if c.r > 0 { // make room at the end
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.buf) {
			return 0, 0, errMalformed
		}
		n, err := c.conn.Read(c.buf[c.w:])
		c.w += n
		if n == 0 && err != nil {
			if err == io.EOF && c.w > c.r {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, err
		}
	}
	// "HTTP/1.1 200 OK"
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) {
		return 0, 0, errMalformed
	}
	status, ok := atoi(head[9:12])
	if !ok {
		return 0, 0, errMalformed
	}
	length := -1
	for line := range bytes.SplitSeq(head[bytes.IndexByte(head, '\n')+1:], []byte("\r\n")) {
		if v, ok := headerValue(line, "x-worker"); ok {
			worker, _ = atoi(v)
		} else if v, ok := headerValue(line, "content-length"); ok {
			if length, ok = atoi(v); !ok {
				return 0, 0, errMalformed
			}
		}
	}
	if length < 0 {
		return 0, 0, errMalformed
	}
	// Discard the body.
	for length > 0 {
		if c.r == c.w {
			c.r, c.w = 0, 0
			n, err := c.conn.Read(c.buf)
			c.w = n
			if n == 0 && err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return 0, 0, err
			}
		}
		k := min(length, c.w-c.r)
		c.r += k
		length -= k
	}
	return status, worker, nil
}

// headerValue returns the value of line if it is the header name
// (lower-case), compared without regard to case.
func headerValue(line []byte, name string) ([]byte, bool) {
	if len(line) <= len(name) || line[len(name)] != ':' {
		return nil, false
	}
	for i := 0; i < len(name); i++ {
		if line[i]|0x20 != name[i] {
			return nil, false
		}
	}
	return bytes.TrimSpace(line[len(name)+1:]), true
}

func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int(ch-'0')
	}
	return n, true
}
