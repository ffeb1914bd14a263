//go:build !unix

package sockshare

import (
	"context"

	"github.com/sockshare/sockshare/policy"
)

// Master is unavailable on this platform: it needs unix descriptor passing.
type Master struct{}

// NewMaster returns an error wrapping ErrUnsupported on this platform,
// after validating cfg.
func NewMaster(cfg Config) (*Master, error) {
	if _, _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	return nil, ErrUnsupported
}

// Run returns ErrUnsupported.
func (m *Master) Run(context.Context) error { return ErrUnsupported }

// Reload returns ErrUnsupported.
func (m *Master) Reload(context.Context) error { return ErrUnsupported }

// Workers returns nil.
func (m *Master) Workers() []WorkerInfo { return nil }

// Send returns ErrUnsupported.
func (m *Master) Send(int, []byte) error { return ErrUnsupported }

// Policy returns the empty name.
func (m *Master) Policy() policy.Name { return "" }

// NumWorkers returns 0.
func (m *Master) NumWorkers() int { return 0 }

// Disconnect returns ErrUnsupported.
func (m *Master) Disconnect(context.Context, int) error { return ErrUnsupported }

// Listeners returns nil.
func (m *Master) Listeners() []ListenerInfo { return nil }

// WaitReady returns ErrUnsupported.
func (m *Master) WaitReady(context.Context) error { return ErrUnsupported }

// Dispatch returns the empty string.
func (m *Master) Dispatch() string { return "" }

// Scale returns ErrUnsupported.
func (m *Master) Scale(context.Context, int) error { return ErrUnsupported }
