package sockshare

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/sockshare/sockshare/internal/kdispatch"
)

// Dispatch modes: who chooses the worker of each connection under the
// dispatching policies (rr, leastconn, sticky). See Config.Dispatch.
const (
	// DispatchAuto uses the kernel where it can, else the master.
	DispatchAuto = "auto"
	// DispatchMaster: the master accepts and hands each connection over.
	DispatchMaster = "master"
	// DispatchKernel: a BPF program chooses the slot socket at SYN time;
	// the master spends nothing per connection.
	DispatchKernel = "kernel"
)

// DispatchEnvVar is read when Config.Dispatch is empty.
const DispatchEnvVar = "SOCKSHARE_DISPATCH"

// resolveDispatch returns "master" or "kernel" for a configured mode
// ("" means the environment, then auto). "kernel" where the kernel cannot
// is an error matching errors.ErrUnsupported that names the reason; "auto"
// then logs the reason once and uses the master.
func resolveDispatch(mode string, log *slog.Logger) (string, error) {
	src := "Config.Dispatch"
	if strings.TrimSpace(mode) == "" {
		mode, src = os.Getenv(DispatchEnvVar), DispatchEnvVar
		if strings.TrimSpace(mode) == "" {
			mode = DispatchAuto
		}
	}
	switch strings.ToLower(strings.TrimSpace(mode)) {
	case DispatchMaster:
		return DispatchMaster, nil
	case DispatchKernel:
		if err := kdispatch.Probe(); err != nil {
			return "", fmt.Errorf("sockshare: dispatch %q: %w", DispatchKernel, err)
		}
		return DispatchKernel, nil
	case DispatchAuto:
		if err := kdispatch.Probe(); err != nil {
			log.Info("sockshare: kernel dispatch unavailable; the master dispatches", "reason", err)
			return DispatchMaster, nil
		}
		return DispatchKernel, nil
	}
	return "", fmt.Errorf("%w: %s: unknown dispatch %q (valid: auto, master, kernel)", ErrBadConfig, src, mode)
}
