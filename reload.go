//go:build unix

package sockshare

import (
	"context"
	"errors"
)

type reloadReq struct {
	ctx  context.Context
	done chan error
}

func (r reloadReq) run(m *Master) { r.done <- errors.New("sockshare: reload not implemented yet") }

// Reload replaces every worker, slot by slot, without refusing a
// connection. See the package documentation.
func (m *Master) Reload(ctx context.Context) error {
	r := reloadReq{ctx: ctx, done: make(chan error, 1)}
	select {
	case m.reloads <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
