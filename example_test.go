package sockshare_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sockshare/sockshare"
)

// Outside a master, Listen is net.Listen: the same binary runs standalone.
func ExampleListen() {
	ln, err := sockshare.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println(ln.Addr().Network(), sockshare.IsWorker())
	// Output: tcp false
}

// One program is both master and worker. The master re-runs the
// executable as its workers; each worker's Listen is served by the master.
func ExampleNewMaster() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if !sockshare.IsWorker() {
		m, err := sockshare.NewMaster(sockshare.Config{
			Workers: 4,
			Policy:  "leastconn",
			OnEvent: func(e sockshare.Event) { log.Println(e) },
		})
		if err != nil {
			log.Fatal(err)
		}
		if err := m.Run(ctx); err != nil { // until SIGTERM: drains, then returns
			log.Fatal(err)
		}
		return
	}
	ln, err := sockshare.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from worker %d\n", sockshare.WorkerID())
	})}
	// SIGTERM (from the master at shutdown or reload) ends ctx; ServeHTTP
	// then answers every connection already accepted before returning.
	if err := sockshare.ServeHTTP(ctx, srv, ln, 30*time.Second); err != nil {
		log.Fatal(err)
	}
}

// A master can run any program as its workers: it opens the addresses in
// Config.Sockets before the first worker starts, and each worker inherits
// them as descriptors 3, 4, ... (here Python's socket.socket(fileno=3)).
// WorkerEnv tells the program about them; Readiness decides when it is
// ready, since it never calls Listen or Ready.
func ExampleConfig_sockets() {
	m, err := sockshare.NewMaster(sockshare.Config{
		Workers: 2,
		Policy:  "reuseport",
		Program: "/usr/bin/python3",
		Args:    []string{"-c", "import socket, socketserver; ..."},
		Sockets: []sockshare.Socket{{Network: "tcp", Address: "127.0.0.1:8080"}},
		WorkerEnv: func(id, slot int) []string {
			return []string{"LISTEN_FDS=1"}
		},
		Readiness: func(ctx context.Context, w sockshare.WorkerInfo) error {
			return nil // ready once started; cmd/sockshare waits for sd_notify
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
