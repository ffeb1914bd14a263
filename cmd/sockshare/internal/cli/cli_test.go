package cli_test

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockshare/sockshare"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/cli"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/fdproto"
	"github.com/sockshare/sockshare/policy"
)

// hermetic clears the environment Parse reads, so that the machine's
// SOCKSHARE_POLICY does not change the outcome.
func hermetic(t *testing.T) {
	t.Helper()
	t.Setenv(policy.EnvVar, "")
}

func TestParseGood(t *testing.T) {
	hermetic(t)
	defaults := cli.Options{
		Workers:         min(runtime.NumCPU(), sockshare.MaxWorkers),
		Dispatch:        "auto",
		Listen:          []string{"tcp://127.0.0.1:8080"},
		ShutdownTimeout: 10 * time.Second,
		Ready:           cli.Ready{Mode: cli.ReadyNotify},
		Command:         []string{"python3", "worker.py"},
	}
	with := func(f func(o *cli.Options)) cli.Options {
		o := defaults
		o.Listen = append([]string(nil), defaults.Listen...)
		o.Command = append([]string(nil), defaults.Command...)
		f(&o)
		return o
	}
	tests := []struct {
		name string
		args string
		want cli.Options
	}{
		{"defaults", "-listen tcp://127.0.0.1:8080 -- python3 worker.py", defaults},
		{"no double dash", "-listen tcp://127.0.0.1:8080 python3 worker.py", defaults},
		{"command flags stay the command's", "-listen tcp://127.0.0.1:8080 -- node -e 1 -workers 3",
			with(func(o *cli.Options) { o.Command = []string{"node", "-e", "1", "-workers", "3"} })},
		{"command starting with a dash", "-listen tcp://127.0.0.1:8080 -- -weird",
			with(func(o *cli.Options) { o.Command = []string{"-weird"} })},
		{"workers 1", "-workers 1 -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Workers = 1 })},
		{"workers max", "-workers=1024 -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Workers = 1024 })},
		{"policy canonical", "-policy leastconn -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Policy = policy.LeastConn })},
		{"policy alias and case", "-policy Round-Robin -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Policy = policy.RR })},
		{"policy none", "-policy none -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Policy = policy.Shared })},
		{"dispatch kernel", "-dispatch KERNEL -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Dispatch = "kernel" })},
		{"dispatch master", "--dispatch=master -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Dispatch = "master" })},
		{"listen order kept", "-listen udp://:5353 -listen tcp://127.0.0.1:8080 -listen tcp://[::1]:8080 -- python3 worker.py",
			with(func(o *cli.Options) {
				o.Listen = []string{"udp://:5353", "tcp://127.0.0.1:8080", "tcp://[::1]:8080"}
			})},
		{"metrics", "-metrics 127.0.0.1:9090 -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Metrics = "127.0.0.1:9090" })},
		{"metrics any host, port 0", "-metrics :0 -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Metrics = ":0" })},
		{"metrics ipv6", "-metrics [::1]:65535 -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Metrics = "[::1]:65535" })},
		{"shutdown timeout", "-shutdown-timeout 1m30s -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.ShutdownTimeout = 90 * time.Second })},
		{"ready started", "-ready started -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Ready = cli.Ready{Mode: cli.ReadyStarted} })},
		{"ready delay", "-ready delay:2s -listen tcp://127.0.0.1:8080 -- python3 worker.py",
			with(func(o *cli.Options) { o.Ready = cli.Ready{Mode: cli.ReadyDelay, Delay: 2 * time.Second} })},
		{"ready notify", "-ready notify -listen tcp://127.0.0.1:8080 -- python3 worker.py", defaults},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cli.Parse(strings.Fields(tt.args))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			if diff := cmp.Diff(tt.want, *got); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	hermetic(t)
	const tail = " -listen tcp://127.0.0.1:8080 -- python3 worker.py"
	tests := []struct {
		name string
		args []string
		flag string // UsageError.Flag
		want string // the whole message
	}{
		{"workers 0", strings.Fields("-workers 0" + tail), "-workers",
			"sockshare: -workers must be between 1 and 1024, got 0"},
		{"workers negative", strings.Fields("-workers -3" + tail), "-workers",
			"sockshare: -workers must be between 1 and 1024, got -3"},
		{"workers too many", strings.Fields("-workers 1025" + tail), "-workers",
			"sockshare: -workers must be between 1 and 1024, got 1025"},
		{"workers not a number", strings.Fields("-workers four" + tail), "-workers",
			`sockshare: -workers must be a number between 1 and 1024, got "four"`},
		{"workers without value", []string{"-workers"}, "-workers",
			"sockshare: -workers needs a value"},
		{"unknown policy", strings.Fields("-policy random" + tail), "-policy",
			`sockshare: -policy: unknown policy "random" (valid: shared, rr, leastconn, reuseport, sticky)`},
		{"unknown dispatch", strings.Fields("-dispatch bpf" + tail), "-dispatch",
			`sockshare: -dispatch must be auto, master or kernel, got "bpf"`},
		{"empty dispatch", []string{"-dispatch=", "-listen", "tcp://127.0.0.1:8080", "--", "x"}, "-dispatch",
			`sockshare: -dispatch must be auto, master or kernel, got ""`},
		{"no listen", strings.Fields("-workers 2 -- python3 worker.py"), "-listen",
			"sockshare: at least one -listen is required (for example -listen tcp://127.0.0.1:8080)"},
		{"empty listen", []string{"-listen", " ", "--", "x"}, "-listen",
			"sockshare: -listen must not be empty"},
		{"listen twice", strings.Fields("-listen tcp://:80" + " -listen tcp://:80 -- x"), "-listen",
			`sockshare: -listen "tcp://:80" is given twice`},
		{"metrics no port", strings.Fields("-metrics localhost" + tail), "-metrics",
			`sockshare: -metrics "localhost": want host:port: missing port in address`},
		{"metrics port too big", strings.Fields("-metrics 127.0.0.1:65536" + tail), "-metrics",
			`sockshare: -metrics "127.0.0.1:65536": port must be a number between 0 and 65535, got "65536"`},
		{"metrics port by name", strings.Fields("-metrics 127.0.0.1:http" + tail), "-metrics",
			`sockshare: -metrics "127.0.0.1:http": port must be a number between 0 and 65535, got "http"`},
		{"metrics negative port", strings.Fields("-metrics :-1" + tail), "-metrics",
			`sockshare: -metrics ":-1": port must be a number between 0 and 65535, got "-1"`},
		{"metrics too many colons", strings.Fields("-metrics ::1:80" + tail), "-metrics",
			`sockshare: -metrics "::1:80": want host:port: too many colons in address`},
		{"shutdown timeout zero", strings.Fields("-shutdown-timeout 0s" + tail), "-shutdown-timeout",
			"sockshare: -shutdown-timeout must be greater than 0, got 0s"},
		{"shutdown timeout negative", strings.Fields("-shutdown-timeout -1s" + tail), "-shutdown-timeout",
			"sockshare: -shutdown-timeout must be greater than 0, got -1s"},
		{"shutdown timeout no unit", strings.Fields("-shutdown-timeout 10" + tail), "-shutdown-timeout",
			`sockshare: -shutdown-timeout must be a duration such as 10s, got "10"`},
		{"ready unknown", strings.Fields("-ready soon" + tail), "-ready",
			`sockshare: -ready must be notify, started or delay:<duration>, got "soon"`},
		{"ready delay without duration", strings.Fields("-ready delay" + tail), "-ready",
			`sockshare: -ready must be notify, started or delay:<duration>, got "delay"`},
		{"ready delay bad", strings.Fields("-ready delay:two" + tail), "-ready",
			`sockshare: -ready "delay:two": the delay must be a duration such as 2s`},
		{"ready delay zero", strings.Fields("-ready delay:0s" + tail), "-ready",
			`sockshare: -ready "delay:0s": the delay must be greater than 0`},
		{"no command", strings.Fields("-listen tcp://127.0.0.1:8080 --"), "",
			"sockshare: no command: want sockshare run [flags] -- command [args...]"},
		{"no command nor dash dash", strings.Fields("-listen tcp://127.0.0.1:8080"), "",
			"sockshare: no command: want sockshare run [flags] -- command [args...]"},
		{"empty command", []string{"-listen", "tcp://127.0.0.1:8080", "--", ""}, "",
			"sockshare: the command must not be an empty string"},
		{"unknown flag", strings.Fields("-worker 2" + tail), "-worker",
			"sockshare: unknown flag -worker (see sockshare -help)"},
		{"bad flag syntax", strings.Fields("---workers 2" + tail), "",
			"sockshare: bad flag syntax: ---workers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := cli.Parse(tt.args)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.args, o)
			}
			if !errors.Is(err, cli.ErrUsage) {
				t.Errorf("Parse(%q): %v does not match ErrUsage", tt.args, err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse(%q):\n got %s\nwant %s", tt.args, got, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Parse(%q): error is not one line: %q", tt.args, err)
			}
			var ue *cli.UsageError
			if !errors.As(err, &ue) || ue.Flag != tt.flag {
				t.Errorf("Parse(%q): UsageError.Flag = %q, want %q", tt.args, ue.Flag, tt.flag)
			}
		})
	}
}

func TestParsePolicyCauseKept(t *testing.T) {
	hermetic(t)
	_, err := cli.Parse(strings.Fields("-policy random -listen tcp://:1 -- x"))
	if !errors.Is(err, policy.ErrUnknownPolicy) {
		t.Errorf("error %v does not match policy.ErrUnknownPolicy", err)
	}
}

func TestParsePolicyFromEnvironment(t *testing.T) {
	args := strings.Fields("-listen tcp://:1 -- x")

	// The library reads SOCKSHARE_POLICY itself; Parse leaves Policy empty
	// but refuses a value the library would refuse.
	t.Setenv(policy.EnvVar, "reuseport")
	o, err := cli.Parse(args)
	if err != nil || o.Policy != "" {
		t.Errorf("with %s=reuseport: Parse = %+v, %v; want Policy \"\"", policy.EnvVar, o, err)
	}

	t.Setenv(policy.EnvVar, "fastest")
	_, err = cli.Parse(args)
	want := `sockshare: SOCKSHARE_POLICY: unknown policy "fastest" (valid: shared, rr, leastconn, reuseport, sticky) (or give -policy)`
	if err == nil || err.Error() != want || !errors.Is(err, cli.ErrUsage) || !errors.Is(err, policy.ErrUnknownPolicy) {
		t.Errorf("with %s=fastest: err = %v\nwant %s", policy.EnvVar, err, want)
	}

	// An explicit -policy wins over a bad variable, as in the library.
	o, err = cli.Parse(append([]string{"-policy", "shared"}, args...))
	if err != nil || o.Policy != policy.Shared {
		t.Errorf("-policy shared with %s=fastest: Parse = %+v, %v", policy.EnvVar, o, err)
	}
}

func TestParseHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		_, err := cli.Parse([]string{arg})
		if !errors.Is(err, cli.ErrHelp) {
			t.Errorf("Parse(%q): err = %v, want ErrHelp", arg, err)
		}
		if errors.Is(err, cli.ErrUsage) {
			t.Errorf("Parse(%q): help matches ErrUsage", arg)
		}
	}
}

type addr struct{ network, hostport string }

func parseAddr(s string) (addr, error) {
	network, hostport, ok := strings.Cut(s, "://")
	if !ok {
		return addr{}, fmt.Errorf("missing scheme")
	}
	return addr{network, hostport}, nil
}

func TestParseListen(t *testing.T) {
	hermetic(t)
	o, err := cli.Parse(strings.Fields("-listen udp://:53 -listen tcp://:80 -- x"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := cli.ParseListen(o, parseAddr)
	if err != nil {
		t.Fatal(err)
	}
	want := []addr{{"udp", ":53"}, {"tcp", ":80"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(addr{})); diff != "" {
		t.Errorf("ParseListen (-want +got):\n%s", diff)
	}

	o, err = cli.Parse(strings.Fields("-listen tcp://:80 -listen 127.0.0.1:81 -- x"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.ParseListen(o, parseAddr)
	const msg = `sockshare: -listen "127.0.0.1:81": missing scheme`
	if err == nil || err.Error() != msg || !errors.Is(err, cli.ErrUsage) {
		t.Errorf("ParseListen: err = %v, want %s", err, msg)
	}
	var ue *cli.UsageError
	if !errors.As(err, &ue) || ue.Flag != "-listen" || ue.Err == nil || ue.Err.Error() != "missing scheme" {
		t.Errorf("ParseListen: UsageError = %+v, want Flag -listen and the parser's error as cause", ue)
	}
}

// TestParseListenWithFDProto runs the runner's real parser: its error
// quotes the value, which then appears once.
func TestParseListenWithFDProto(t *testing.T) {
	hermetic(t)
	o, err := cli.Parse(strings.Fields("-listen tcp://127.0.0.1:8080#http -listen udp://[::1]:5353 -- x"))
	if err != nil {
		t.Fatal(err)
	}
	socks, err := cli.ParseListen(o, fdproto.ParseListenURL)
	if err != nil || len(socks) != 2 || socks[0].Network != "tcp" || socks[1].Network != "udp" {
		t.Fatalf("ParseListen = %+v, %v; want the tcp then the udp socket", socks, err)
	}

	o.Listen = []string{"tcp://127.0.0.1:8080", "127.0.0.1:8081"}
	_, err = cli.ParseListen(o, fdproto.ParseListenURL)
	if !errors.Is(err, cli.ErrUsage) || !errors.Is(err, fdproto.ErrBadListen) {
		t.Fatalf("ParseListen(no scheme): err = %v, want ErrUsage and fdproto.ErrBadListen", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "sockshare: -listen: ") || strings.Count(msg, `"127.0.0.1:8081"`) != 1 || strings.Contains(msg, "\n") {
		t.Errorf("ParseListen(no scheme): %q: want one line starting \"sockshare: -listen: \" that quotes the value once", msg)
	}
}

func TestReadyString(t *testing.T) {
	for _, s := range []string{"notify", "started", "delay:2s", "delay:1m30s"} {
		hermetic(t)
		o, err := cli.Parse([]string{"-ready", s, "-listen", "tcp://:1", "x"})
		if err != nil {
			t.Fatal(err)
		}
		if got := o.Ready.String(); got != s {
			t.Errorf("Ready(%q).String() = %q", s, got)
		}
	}
}

func TestUsage(t *testing.T) {
	u := cli.Usage()
	for _, want := range []string{
		"sockshare run [flags] -- command [args...]", "sockshare version",
		"-workers N", "(default " + strconv.Itoa(min(runtime.NumCPU(), sockshare.MaxWorkers)),
		"-policy P", "shared, rr, leastconn, reuseport, sticky",
		"-dispatch auto|master|kernel", "(default auto)",
		"-listen network://host:port[#name]", "-metrics host:port", "-shutdown-timeout D", "(default 10s)",
		"-ready notify|started|delay:D",
		"LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "EINHORN_FD_COUNT", "EINHORN_FD_0", "EINHORN_FDS",
		"SERVER_STARTER_PORT", "SOCKSHARE_WORKER_ID", "SOCKSHARE_SLOT", "NOTIFY_SOCKET",
		"HUP", "TERM, INT", "TTIN", "TTOU", "status 2",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("Usage() lacks %q", want)
		}
	}
	if strings.Contains(u, "{") {
		t.Errorf("Usage() has an unreplaced placeholder:\n%s", u)
	}
	for i, line := range strings.Split(u, "\n") {
		if len(line) > 80 {
			t.Errorf("Usage() line %d is %d columns: %q", i+1, len(line), line)
		}
	}
}
