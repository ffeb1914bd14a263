//go:build unix

package sockshare_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/sockshare/sockshare"
)

// Scale adds and removes workers while Run runs, as SIGTTIN and SIGTTOU do
// for cmd/sockshare.
func ExampleMaster_Scale() {
	m, err := sockshare.NewMaster(sockshare.Config{Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		more := make(chan os.Signal, 1)
		signal.Notify(more, syscall.SIGTTIN)
		for range more {
			if err := m.Scale(ctx, m.NumWorkers()+1); err != nil {
				log.Print(err)
			}
		}
	}()
	if err := m.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
