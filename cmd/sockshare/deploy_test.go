package main

// Checks of the deployment files (docs/deploy) and of docs/DEPLOY.md:
// the systemd units pass systemd-analyze verify, every sockshare command
// line in them parses with the runner's own parser and uses only flags of
// its usage text, and what must agree across the files does (ports,
// socket names, timeouts, probes). The module has no YAML library, so the
// Kubernetes manifest is read with a few string rules that suit its
// layout, not parsed.

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockshare/sockshare/cmd/sockshare/internal/cli"
	"github.com/sockshare/sockshare/cmd/sockshare/internal/fdproto"
)

const (
	deployDir        = "../../docs/deploy"
	deployDoc        = "../../docs/DEPLOY.md"
	deployUnitBinary = "/usr/local/bin/sockshare" // ExecStart's program in the units
	deployUnitApp    = "/usr/local/bin/app"       // the worker command in the units
)

// deployUnits are the systemd units, verified together.
var deployUnits = []string{"hello.socket", "hello.service", "hello-plain.service"}

func deployRead(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(deployDir, name)
	if name == "DEPLOY.md" {
		path = deployDoc
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// deployUnitValues returns every value of key (Key=value lines, comments
// skipped) in a unit file, in order.
func deployUnitValues(unit, key string) []string {
	var vals []string
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// deployUnitValue is the one value of key; the test fails if there is not
// exactly one.
func deployUnitValue(t *testing.T, name, unit, key string) string {
	t.Helper()
	vals := deployUnitValues(unit, key)
	if len(vals) != 1 {
		t.Fatalf("%s: %d %s= lines (%q), want 1", name, len(vals), key, vals)
	}
	return vals[0]
}

// TestDeploySystemdVerify runs systemd-analyze verify on copies of the
// units whose ExecStart names a binary that exists here (verify rejects a
// missing one), and fails on anything it says about them: verify exits 0
// for an unknown key or a bad value and only prints a line.
func TestDeploySystemdVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze is not installed (%v): the units are not verified", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyUnits := func(t *testing.T, edit func(name, unit string) string) []string {
		dir := t.TempDir()
		var paths []string
		for _, name := range deployUnits {
			unit := deployRead(t, name)
			unit = strings.ReplaceAll(unit, "ExecStart="+deployUnitBinary+" ", "ExecStart="+exe+" ")
			unit = strings.ReplaceAll(unit, " -- "+deployUnitApp, " -- "+exe)
			if edit != nil {
				unit = edit(name, unit)
			}
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, p)
		}
		return paths
	}
	// verify returns what systemd-analyze said about the hello units, and
	// logs the rest (about the machine's own units).
	verify := func(t *testing.T, paths []string) (complaints []string, exitErr error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, analyze, append([]string{"verify", "--man=no"}, paths...)...)
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("systemd-analyze verify did not finish in 60s:\n%s", out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			switch {
			case line == "":
			case strings.Contains(line, "hello"):
				complaints = append(complaints, line)
			default:
				t.Logf("systemd-analyze (not about the hello units): %s", line)
			}
		}
		return complaints, err
	}

	t.Run("units", func(t *testing.T) {
		complaints, err := verify(t, copyUnits(t, nil))
		for _, c := range complaints {
			t.Errorf("systemd-analyze verify: %s", c)
		}
		if err != nil {
			t.Errorf("systemd-analyze verify: %v", err)
		}
	})
	// The check itself: a unit with a bad value must be reported, or the
	// test above proves nothing on this systemd.
	t.Run("a bad value is reported", func(t *testing.T) {
		paths := copyUnits(t, func(name, unit string) string {
			if name == "hello.service" {
				return regexp.MustCompile(`(?m)^KillMode=.*$`).ReplaceAllString(unit, "KillMode=mixd")
			}
			return unit
		})
		complaints, _ := verify(t, paths)
		if !slices.ContainsFunc(complaints, func(c string) bool { return strings.Contains(c, "mixd") }) {
			t.Errorf("systemd-analyze verify said nothing of KillMode=mixd (said %q): the units' check is blind here", complaints)
		}
	})
}

// deployCommand is one sockshare command line found in the deployment
// files: the arguments after "sockshare run".
type deployCommand struct {
	where string
	args  []string
}

// deployJSONArray decodes the JSON array (a Dockerfile's exec form, a YAML
// flow sequence of double-quoted strings) that follows prefix on a line of
// s.
func deployJSONArray(t *testing.T, where, s, prefix string) []string {
	t.Helper()
	for _, line := range strings.Split(s, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), prefix)
		if !ok {
			continue
		}
		var out []string
		if err := json.Unmarshal([]byte(strings.TrimSpace(rest)), &out); err != nil {
			t.Fatalf("%s: %s%s: %v", where, prefix, rest, err)
		}
		return out
	}
	t.Fatalf("%s: no line starting with %q", where, prefix)
	return nil
}

// deployRunArgs returns the arguments after "run" of a command whose
// program is sockshare (by base name).
func deployRunArgs(t *testing.T, where string, argv []string) []string {
	t.Helper()
	if len(argv) < 2 || filepath.Base(argv[0]) != "sockshare" || argv[1] != "run" {
		t.Fatalf("%s: %q is not a sockshare run command", where, argv)
	}
	return argv[2:]
}

// deployWords splits a command line written in the docs: whitespace
// separates words, '...' and "..." quote (no escapes are used there).
func deployWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

var (
	deployFenceRE  = regexp.MustCompile("(?ms)^```[a-z]*\n(.*?)^```")
	deployInlineRE = regexp.MustCompile("`([^`]+)`")
	// deployShellEnd is where a command line written in the docs stops
	// being sockshare's arguments.
	deployShellEnd = regexp.MustCompile(`\s(>|2>|&|\||;)`)
)

// deployDocCommands returns the sockshare run command lines of DEPLOY.md:
// in fenced blocks (one a line) and in inline code (which may wrap).
func deployDocCommands(doc string) []deployCommand {
	var cmds []deployCommand
	add := func(where, text string) {
		_, rest, ok := strings.Cut(text, "sockshare run ")
		if !ok {
			return
		}
		if loc := deployShellEnd.FindStringIndex(rest); loc != nil {
			rest = rest[:loc[0]]
		}
		cmds = append(cmds, deployCommand{where, deployWords(rest)})
	}
	for _, m := range deployFenceRE.FindAllStringSubmatch(doc, -1) {
		for _, line := range strings.Split(m[1], "\n") {
			add("DEPLOY.md: "+line, line)
		}
	}
	prose := deployFenceRE.ReplaceAllString(doc, "")
	for _, m := range deployInlineRE.FindAllStringSubmatch(prose, -1) {
		text := strings.Join(strings.Fields(m[1]), " ")
		add("DEPLOY.md: `"+text+"`", text)
	}
	return cmds
}

// deployAllCommands gathers every sockshare command line of the deployment
// files and of DEPLOY.md.
func deployAllCommands(t *testing.T) []deployCommand {
	var cmds []deployCommand
	for _, name := range []string{"hello.service", "hello-plain.service"} {
		unit := deployRead(t, name)
		execStart := deployUnitValue(t, name, unit, "ExecStart")
		cmds = append(cmds, deployCommand{name + ": ExecStart", deployRunArgs(t, name, strings.Fields(execStart))})
	}
	df := deployRead(t, "Dockerfile")
	argv := append(deployJSONArray(t, "Dockerfile", df, "ENTRYPOINT "), deployJSONArray(t, "Dockerfile", df, "CMD ")...)
	cmds = append(cmds, deployCommand{"Dockerfile: ENTRYPOINT + CMD", deployRunArgs(t, "Dockerfile", argv)})
	k8s := deployRead(t, "kubernetes.yaml")
	argv = append(deployJSONArray(t, "kubernetes.yaml", k8s, "command: "), deployJSONArray(t, "kubernetes.yaml", k8s, "args: ")...)
	cmds = append(cmds, deployCommand{"kubernetes.yaml: command + args", deployRunArgs(t, "kubernetes.yaml", argv)})
	doc := deployDocCommands(deployRead(t, "DEPLOY.md"))
	if len(doc) < 5 {
		t.Fatalf("DEPLOY.md: found %d sockshare run command lines, want at least 5: %v", len(doc), doc)
	}
	return append(cmds, doc...)
}

// deployUsageFlags are the flags of "sockshare run" as its usage text
// lists them ("  -workers N").
func deployUsageFlags(t *testing.T) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  (-[a-z][a-z-]*)\b`).FindAllStringSubmatch(cli.Usage(), -1) {
		flags[m[1]] = true
	}
	if !flags["-listen"] || !flags["-ready"] {
		t.Fatalf("usage flags %v: the usage text's layout changed", flags)
	}
	return flags
}

// TestDeployCommandLines parses every sockshare run command line of the
// deployment files and of DEPLOY.md with cli.Parse (and their -listen
// values with the runner's URL parser), and checks that each flag they
// use, and each flag DEPLOY.md names in code, is in cli.Usage().
func TestDeployCommandLines(t *testing.T) {
	flags := deployUsageFlags(t)
	for _, c := range deployAllCommands(t) {
		// Flags first: a template ("[flags]", "...") is not parsed but
		// names only real flags too.
		for _, a := range c.args {
			if a == "--" {
				break
			}
			if strings.HasPrefix(a, "-") && !flags[a] && a != "-h" {
				t.Errorf("%s: flag %s is not in sockshare's usage text", c.where, a)
			}
		}
		if slices.ContainsFunc(c.args, func(a string) bool { return strings.Contains(a, "...") || a == "[flags]" }) {
			continue
		}
		t.Logf("%s", c.where)
		o, err := cli.Parse(c.args)
		if errors.Is(err, cli.ErrHelp) && slices.Equal(c.args, []string{"-h"}) {
			continue
		}
		if err != nil {
			t.Errorf("%s: cli.Parse(%q): %v", c.where, c.args, err)
			continue
		}
		if _, err := cli.ParseListen(o, fdproto.ParseListenURL); err != nil {
			t.Errorf("%s: %v", c.where, err)
		}
	}
	// Flags named in inline code: `-ready delay:2s`, `-shutdown-timeout`.
	doc := deployFenceRE.ReplaceAllString(deployRead(t, "DEPLOY.md"), "")
	for _, m := range regexp.MustCompile("`(-[a-z][a-z-]*)").FindAllStringSubmatch(doc, -1) {
		if !flags[m[1]] {
			t.Errorf("DEPLOY.md names %s in code, which is not a flag of sockshare run", m[1])
		}
	}
}

// deployListenPort returns the port of the first -listen of o.
func deployListenPort(t *testing.T, where string, o *cli.Options) (name, port string) {
	t.Helper()
	socks, err := cli.ParseListen(o, fdproto.ParseListenURL)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	_, port, err = net.SplitHostPort(socks[0].Addr)
	if err != nil {
		t.Fatalf("%s: -listen %s: %v", where, socks[0].Addr, err)
	}
	return socks[0].Name, port
}

func deployParse(t *testing.T, where string, args []string) *cli.Options {
	t.Helper()
	o, err := cli.Parse(args)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return o
}

// TestDeploySystemdUnits checks the services' settings DEPLOY.md
// recommends, and what they must agree on with hello.socket.
func TestDeploySystemdUnits(t *testing.T) {
	sock := deployRead(t, "hello.socket")
	name := deployUnitValue(t, "hello.socket", sock, "FileDescriptorName")
	sockPort := deployUnitValue(t, "hello.socket", sock, "ListenStream")
	reusePort := slices.Contains(deployUnitValues(sock, "ReusePort"), "yes")

	for _, unitName := range []string{"hello.service", "hello-plain.service"} {
		t.Run(unitName, func(t *testing.T) {
			unit := deployRead(t, unitName)
			want := map[string]string{
				"Type":                     "notify",
				"NotifyAccess":             "main",
				"KillMode":                 "mixed",
				"ExecReload":               "/bin/kill -HUP $MAINPID",
				"Restart":                  "on-failure",
				"RestartPreventExitStatus": "2",
			}
			for k, v := range want {
				if got := deployUnitValue(t, unitName, unit, k); got != v {
					t.Errorf("%s=%s, want %s", k, got, v)
				}
			}
			execStart := strings.Fields(deployUnitValue(t, unitName, unit, "ExecStart"))
			if execStart[0] != deployUnitBinary {
				t.Errorf("ExecStart runs %s, want %s", execStart[0], deployUnitBinary)
			}
			o := deployParse(t, unitName, deployRunArgs(t, unitName, execStart))
			// systemd reads a bare number as seconds; the units use
			// Go-style durations ("20s") otherwise.
			v := deployUnitValue(t, unitName, unit, "TimeoutStopSec")
			stop, err := time.ParseDuration(v)
			if n, nerr := strconv.Atoi(v); nerr == nil {
				stop, err = time.Duration(n)*time.Second, nil
			}
			if err != nil {
				t.Fatalf("TimeoutStopSec=%s: %v", v, err)
			}
			if stop <= o.ShutdownTimeout {
				t.Errorf("TimeoutStopSec=%v is not above -shutdown-timeout %v", stop, o.ShutdownTimeout)
			}
			lname, lport := deployListenPort(t, unitName, o)
			activated := slices.Contains(deployUnitValues(unit, "Requires"), "hello.socket")
			if !activated {
				return
			}
			// Socket-activated: the passed socket must be claimed, and
			// served under the policy.
			if lname != name {
				t.Errorf("-listen is named %q, hello.socket's FileDescriptorName=%s", lname, name)
			}
			if lport != sockPort {
				t.Errorf("-listen port %s, hello.socket listens on %s", lport, sockPort)
			}
			switch o.Policy {
			case "shared":
			case "reuseport":
				if !reusePort {
					t.Error("-policy reuseport with a passed socket needs ReusePort=yes in hello.socket")
				}
			default:
				t.Errorf("-policy %q: a foreign program on a passed socket needs shared or reuseport", o.Policy)
			}
		})
	}
	// The plain service binds the port hello.socket would hold.
	if !slices.Contains(deployUnitValues(deployRead(t, "hello-plain.service"), "Conflicts"), "hello.socket") {
		t.Error("hello-plain.service does not conflict with hello.socket, which binds the same port")
	}
}

// deployYAMLBlock returns the lines under the first line of lines that is
// key: (then more indented), with the key's line's indentation.
func deployYAMLBlock(t *testing.T, lines []string, key string) []string {
	t.Helper()
	for i, line := range lines {
		trim := strings.TrimLeft(line, " ")
		if trim != key+":" && trim != "- "+key+":" {
			continue
		}
		indent := len(line) - len(trim)
		var out []string
		for _, l := range lines[i+1:] {
			if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#") {
				continue
			}
			if len(l)-len(strings.TrimLeft(l, " ")) <= indent {
				break
			}
			out = append(out, l)
		}
		return out
	}
	t.Fatalf("kubernetes.yaml: no %q block", key)
	return nil
}

// deployYAMLScalar returns the value of the first "key: value" line in
// lines, unquoted.
func deployYAMLScalar(t *testing.T, lines []string, key string) string {
	t.Helper()
	for _, line := range lines {
		trim := strings.TrimPrefix(strings.TrimSpace(line), "- ")
		if v, ok := strings.CutPrefix(trim, key+": "); ok {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	t.Fatalf("kubernetes.yaml: no %q in %q", key, lines)
	return ""
}

// TestDeployContainer checks the Dockerfile and the Kubernetes manifest
// against each other and against their sockshare command lines.
func TestDeployContainer(t *testing.T) {
	df := deployRead(t, "Dockerfile")
	entry := deployJSONArray(t, "Dockerfile", df, "ENTRYPOINT ")
	cmd := deployJSONArray(t, "Dockerfile", df, "CMD ")
	if !strings.Contains(df, "COPY --from=sockshare /go/bin/sockshare "+entry[0]+"\n") {
		t.Errorf("Dockerfile: ENTRYPOINT runs %s, which no COPY --from=sockshare puts there", entry[0])
	}
	if !strings.Contains(df, "CGO_ENABLED=0 go install") {
		t.Error("Dockerfile: sockshare is not built with CGO_ENABLED=0 (a dynamic binary does not run on every base image)")
	}
	o := deployParse(t, "Dockerfile", deployRunArgs(t, "Dockerfile", append(entry, cmd...)))
	if !slices.Contains(entry, "-workers") {
		t.Error("Dockerfile: no -workers (the default counts the host's CPUs, not the container's limit)")
	}
	_, httpPort := deployListenPort(t, "Dockerfile", o)
	_, metricsPort, _ := strings.Cut(o.Metrics, ":")
	exposed := strings.Fields(deployDockerArgs(t, df, "EXPOSE"))
	for _, p := range []string{httpPort, metricsPort} {
		if !slices.Contains(exposed, p) {
			t.Errorf("Dockerfile: EXPOSE %v lacks port %s", exposed, p)
		}
	}

	k8s := deployRead(t, "kubernetes.yaml")
	lines := strings.Split(k8s, "\n")
	kcmd := deployJSONArray(t, "kubernetes.yaml", k8s, "command: ")
	kargs := deployJSONArray(t, "kubernetes.yaml", k8s, "args: ")
	if !slices.Equal(kcmd, entry) || !slices.Equal(kargs, cmd) {
		t.Errorf("kubernetes.yaml runs %q %q, the Dockerfile %q %q: DEPLOY.md says the pods run that image's command", kcmd, kargs, entry, cmd)
	}
	ko := deployParse(t, "kubernetes.yaml", deployRunArgs(t, "kubernetes.yaml", append(kcmd, kargs...)))
	_, kHTTP := deployListenPort(t, "kubernetes.yaml", ko)
	_, kMetrics, _ := strings.Cut(ko.Metrics, ":")
	if host, _, _ := strings.Cut(ko.Metrics, ":"); host != "0.0.0.0" {
		t.Errorf("-metrics %s: probes come from outside the container, want 0.0.0.0", ko.Metrics)
	}

	// Container ports by name.
	ports := map[string]string{}
	var cur string
	for _, l := range deployYAMLBlock(t, deployYAMLBlock(t, lines, "containers"), "ports") {
		trim := strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(trim, "- name: "); ok {
			cur = v
		} else if v, ok := strings.CutPrefix(trim, "containerPort: "); ok {
			ports[cur] = v
		}
	}
	if ports["http"] != kHTTP {
		t.Errorf("containerPort http is %q, -listen's port %s", ports["http"], kHTTP)
	}
	if ports["metrics"] != kMetrics {
		t.Errorf("containerPort metrics is %q, -metrics' port %s", ports["metrics"], kMetrics)
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		get := deployYAMLBlock(t, deployYAMLBlock(t, lines, probe), "httpGet")
		if p := deployYAMLScalar(t, get, "path"); p != "/healthz" {
			t.Errorf("%s asks for %s, want /healthz", probe, p)
		}
		if p := deployYAMLScalar(t, get, "port"); p != "metrics" && p != kMetrics {
			t.Errorf("%s asks port %s, want metrics (%s)", probe, p, kMetrics)
		}
	}
	ann := deployYAMLBlock(t, lines, "annotations")
	if p := deployYAMLScalar(t, ann, "prometheus.io/port"); p != kMetrics {
		t.Errorf("prometheus.io/port %s, -metrics' port %s", p, kMetrics)
	}
	if p := deployYAMLScalar(t, ann, "prometheus.io/path"); p != "/metrics" {
		t.Errorf("prometheus.io/path %s, want /metrics", p)
	}
	grace, err := strconv.Atoi(deployYAMLScalar(t, lines, "terminationGracePeriodSeconds"))
	if err != nil {
		t.Fatal(err)
	}
	pre, err := strconv.Atoi(deployYAMLScalar(t, deployYAMLBlock(t, lines, "preStop"), "seconds"))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(grace)*time.Second <= time.Duration(pre)*time.Second+ko.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %d is not above preStop %ds + -shutdown-timeout %v", grace, pre, ko.ShutdownTimeout)
	}
	limits := deployYAMLBlock(t, deployYAMLBlock(t, lines, "resources"), "limits")
	if cpu := deployYAMLScalar(t, limits, "cpu"); cpu != strconv.Itoa(ko.Workers) {
		t.Errorf("CPU limit %s, -workers %d: one worker per CPU of the limit", cpu, ko.Workers)
	}
	svc := strings.Split(k8s[strings.Index(k8s, "kind: Service"):], "\n")
	if p := deployYAMLScalar(t, deployYAMLBlock(t, svc, "ports"), "targetPort"); p != "http" && p != kHTTP {
		t.Errorf("the Service's targetPort is %s, want http (%s)", p, kHTTP)
	}
}

// deployDockerArgs returns the arguments of the one instruction of a
// Dockerfile.
func deployDockerArgs(t *testing.T, df, instr string) string {
	t.Helper()
	var vals []string
	for _, line := range strings.Split(df, "\n") {
		if v, ok := strings.CutPrefix(line, instr+" "); ok {
			vals = append(vals, v)
		}
	}
	if len(vals) != 1 {
		t.Fatalf("Dockerfile: %d %s instructions, want 1", len(vals), instr)
	}
	return vals[0]
}

// TestDeployDocQuotesFiles checks that the files DEPLOY.md shows in full
// are shown as they are.
func TestDeployDocQuotesFiles(t *testing.T) {
	doc := deployRead(t, "DEPLOY.md")
	for _, name := range []string{"hello.socket", "hello.service", "Dockerfile"} {
		if !strings.Contains(doc, "\n"+deployRead(t, name)+"```\n") {
			t.Errorf("DEPLOY.md does not show %s as it is in docs/deploy", name)
		}
	}
	// The lines it quotes from hello-plain.service.
	plain := deployRead(t, "hello-plain.service")
	for _, key := range []string{"ExecStart", "Conflicts", "After"} {
		line := key + "=" + deployUnitValue(t, "hello-plain.service", plain, key)
		if !strings.Contains(doc, "\n"+line+"\n") {
			t.Errorf("DEPLOY.md does not quote hello-plain.service's %s", line)
		}
	}
	// And the Kubernetes command lines it quotes.
	k8s := deployRead(t, "kubernetes.yaml")
	for _, prefix := range []string{"command: ", "args: "} {
		for _, line := range strings.Split(k8s, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), prefix) && !strings.Contains(doc, "\n"+strings.TrimSpace(line)+"\n") {
				t.Errorf("DEPLOY.md does not quote kubernetes.yaml's %s", strings.TrimSpace(line))
			}
		}
	}
}
