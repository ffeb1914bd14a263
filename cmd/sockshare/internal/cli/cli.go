package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/policy"
)

// ErrUsage is matched (with errors.Is) by every error of [Parse] and
// [ParseListen] that comes from the command line: main prints it and exits
// with status 2.
var ErrUsage = errors.New("usage error")

// ErrHelp is returned by [Parse] when the arguments ask for help (-h,
// -help): main prints [Usage] on stdout and exits with status 0. It is
// flag.ErrHelp.
var ErrHelp = flag.ErrHelp

// UsageError is a command-line mistake. Its message is one line, starting
// with "sockshare: ", that names the flag and the value.
type UsageError struct {
	Flag string // the flag at fault with its dash ("-workers"), "" for the command
	Msg  string // the message without the "sockshare: " prefix
	Err  error  // the cause, if any (a parser's error, policy.ErrUnknownPolicy)
}

func (e *UsageError) Error() string { return "sockshare: " + e.Msg }

// Is makes errors.Is(err, ErrUsage) true.
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// Unwrap returns the cause.
func (e *UsageError) Unwrap() error { return e.Err }

func usageErr(flagName string, cause error, format string, args ...any) error {
	return &UsageError{Flag: flagName, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// DefaultShutdownTimeout is -shutdown-timeout's default.
const DefaultShutdownTimeout = 10 * time.Second

// ReadyMode says when a worker counts as ready (the moment a rolling reload
// moves on to the next slot and /healthz turns 200).
type ReadyMode string

// The readiness modes, as typed after -ready.
const (
	// ReadyNotify: when the worker sends READY=1 on $NOTIFY_SOCKET
	// (sd_notify). A worker that never sends it never becomes ready.
	ReadyNotify ReadyMode = "notify"
	// ReadyStarted: as soon as the process has started.
	ReadyStarted ReadyMode = "started"
	// ReadyDelay: Ready.Delay after the process has started.
	ReadyDelay ReadyMode = "delay"
)

// Ready is the parsed -ready flag.
type Ready struct {
	Mode  ReadyMode
	Delay time.Duration // > 0 under ReadyDelay, else 0
}

// String returns the flag's form: "notify", "started" or "delay:2s".
func (r Ready) String() string {
	if r.Mode == ReadyDelay {
		return string(r.Mode) + ":" + r.Delay.String()
	}
	return string(r.Mode)
}

// Options is a parsed and validated run command line.
type Options struct {
	// Workers is the number of worker processes, 1..sockshare.MaxWorkers;
	// by default runtime.NumCPU() (at most MaxWorkers).
	Workers int
	// Policy is the canonical policy name, or "" when -policy was not
	// given: the library's default then applies (SOCKSHARE_POLICY, else
	// policy.Default). Parse checks SOCKSHARE_POLICY too in that case, so
	// a bad value fails here rather than at start.
	Policy policy.Name
	// Dispatch is sockshare.DispatchAuto, DispatchMaster or DispatchKernel
	// (lower case); auto by default.
	Dispatch string
	// Listen holds the -listen values as typed, in order, at least one
	// and no two the same. ParseListen parses them.
	Listen []string
	// Metrics is the host:port of the /metrics and /healthz server, ""
	// for none. Port 0 picks a free port.
	Metrics string
	// ShutdownTimeout bounds a worker's graceful stop before it is
	// killed; > 0.
	ShutdownTimeout time.Duration
	// Ready says when a worker counts as ready.
	Ready Ready
	// Command is the program (Command[0], looked up in PATH by the
	// runner) and its arguments; never empty.
	Command []string
}

// Parse parses the arguments that follow "sockshare run": flags, then
// optionally "--", then the command and its arguments. The first argument
// that is not a flag starts the command, so "--" is needed only when the
// command itself starts with a dash; writing it always is clearer.
//
// Errors match [ErrUsage] (one line, see [UsageError]) or [ErrHelp].
func Parse(args []string) (*Options, error) {
	fs := flag.NewFlagSet("sockshare run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	o := &Options{}
	// Values are read as strings and checked below, so that every error
	// has the same form instead of the flag package's "invalid value".
	workers := fs.String("workers", strconv.Itoa(defaultWorkers()), "")
	pol := fs.String("policy", "", "")
	disp := fs.String("dispatch", sockshare.DispatchAuto, "")
	fs.Func("listen", "", func(s string) error {
		o.Listen = append(o.Listen, s)
		return nil
	})
	fs.StringVar(&o.Metrics, "metrics", "", "")
	shutdown := fs.String("shutdown-timeout", DefaultShutdownTimeout.String(), "")
	ready := fs.String("ready", string(ReadyNotify), "")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, flagError(err)
	}

	n, err := strconv.Atoi(strings.TrimSpace(*workers))
	if err != nil {
		return nil, usageErr("-workers", nil, "-workers must be a number between 1 and %d, got %q", sockshare.MaxWorkers, *workers)
	}
	if n < 1 || n > sockshare.MaxWorkers {
		return nil, usageErr("-workers", nil, "-workers must be between 1 and %d, got %d", sockshare.MaxWorkers, n)
	}
	o.Workers = n

	// Resolve also checks SOCKSHARE_POLICY when -policy is empty; its
	// error then names the variable.
	given := strings.TrimSpace(*pol) != ""
	p, err := policy.Resolve(*pol)
	switch {
	case err != nil && given:
		return nil, usageErr("-policy", err, "-policy: %v", err)
	case err != nil:
		return nil, usageErr("", err, "%v (or give -policy)", err)
	case given:
		o.Policy = p
	}

	switch d := strings.ToLower(strings.TrimSpace(*disp)); d {
	case sockshare.DispatchAuto, sockshare.DispatchMaster, sockshare.DispatchKernel:
		o.Dispatch = d
	default:
		return nil, usageErr("-dispatch", nil, "-dispatch must be auto, master or kernel, got %q", *disp)
	}

	if len(o.Listen) == 0 {
		return nil, usageErr("-listen", nil, "at least one -listen is required (for example -listen tcp://127.0.0.1:8080)")
	}
	for i, l := range o.Listen {
		if strings.TrimSpace(l) == "" {
			return nil, usageErr("-listen", nil, "-listen must not be empty")
		}
		if slices.Contains(o.Listen[:i], l) {
			return nil, usageErr("-listen", nil, "-listen %q is given twice", l)
		}
	}

	if o.Metrics != "" {
		if err := checkHostPort(o.Metrics); err != nil {
			return nil, usageErr("-metrics", err, "-metrics %q: %v", o.Metrics, err)
		}
	}

	d, err := time.ParseDuration(strings.TrimSpace(*shutdown))
	if err != nil {
		return nil, usageErr("-shutdown-timeout", nil, "-shutdown-timeout must be a duration such as 10s, got %q", *shutdown)
	}
	if d <= 0 {
		return nil, usageErr("-shutdown-timeout", nil, "-shutdown-timeout must be greater than 0, got %v", d)
	}
	o.ShutdownTimeout = d

	if o.Ready, err = parseReady(*ready); err != nil {
		return nil, err
	}

	o.Command = fs.Args()
	if len(o.Command) == 0 {
		return nil, usageErr("", nil, "no command: want sockshare run [flags] -- command [args...]")
	}
	if o.Command[0] == "" {
		return nil, usageErr("", nil, "the command must not be an empty string")
	}
	return o, nil
}

// ParseListen parses o.Listen, in order, with parse (the listen-URL parser
// of the package that opens the sockets, fdproto.ParseListenURL) and
// returns the results in the same order. The first failure is an error
// matching [ErrUsage] that wraps parse's error and names the value (once:
// not again when parse's message quotes it already).
func ParseListen[T any](o *Options, parse func(string) (T, error)) ([]T, error) {
	out := make([]T, 0, len(o.Listen))
	for _, s := range o.Listen {
		v, err := parse(s)
		if err != nil {
			if strings.Contains(err.Error(), strconv.Quote(s)) {
				return nil, usageErr("-listen", err, "-listen: %v", err)
			}
			return nil, usageErr("-listen", err, "-listen %q: %v", s, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// defaultWorkers is -workers' default: one per CPU, within the limit.
func defaultWorkers() int {
	return min(runtime.NumCPU(), sockshare.MaxWorkers)
}

// flagError rewrites the flag package's errors (the only ones left once
// every value is a string) into this package's form.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return usageErr(name, err, "unknown flag %s (see sockshare -help)", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return usageErr(name, err, "%s needs a value", name)
	}
	return usageErr("", err, "%s", strings.ReplaceAll(msg, "\n", " "))
}

// checkHostPort accepts host:port with a numeric port 0..65535; the host
// may be empty (every interface).
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return fmt.Errorf("want host:port: %s", ae.Err)
		}
		return fmt.Errorf("want host:port: %w", err)
	}
	n, err := strconv.ParseUint(port, 10, 64)
	if err != nil || n > 65535 {
		return fmt.Errorf("port must be a number between 0 and 65535, got %q", port)
	}
	return nil
}

// parseReady parses -ready: notify, started or delay:<duration>.
func parseReady(s string) (Ready, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case string(ReadyNotify):
		return Ready{Mode: ReadyNotify}, nil
	case string(ReadyStarted):
		return Ready{Mode: ReadyStarted}, nil
	}
	if ds, ok := strings.CutPrefix(t, string(ReadyDelay)+":"); ok {
		d, err := time.ParseDuration(ds)
		if err != nil {
			return Ready{}, usageErr("-ready", nil, "-ready %q: the delay must be a duration such as 2s", s)
		}
		if d <= 0 {
			return Ready{}, usageErr("-ready", nil, "-ready %q: the delay must be greater than 0", s)
		}
		return Ready{Mode: ReadyDelay, Delay: d}, nil
	}
	return Ready{}, usageErr("-ready", nil, "-ready must be notify, started or delay:<duration>, got %q", s)
}
