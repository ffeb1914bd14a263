// Package sockshare lets several worker processes serve one TCP or UDP
// address, in the spirit of Node.js's cluster module, with the sharing
// strategy chosen at run time by name.
//
// # Process model
//
// One program is both master and worker. The master (a Master built with
// NewMaster) starts Config.Workers copies of the program, by default the
// running executable with the same arguments, and supervises them. Each
// worker is connected to the master by a private socketpair, inherited as an
// extra file; no filesystem path is involved, so no other process can
// connect. Environment variables mark a worker; this package reads and
// removes them at initialisation, before user code runs, so a worker's own
// children are not workers.
//
// In a worker, Listen and ListenPacket ask the master for the address. The
// master binds it under the policy (see package policy) and answers with a
// descriptor (shared, reuseport) or by handing accepted connections (rr,
// leastconn). Outside a master the same calls are plain net.Listen and
// net.ListenPacket, so the same binary runs standalone.
//
// Every worker's Listen of the same network and address (and the same n-th
// call, as in Node.js) shares one socket or group: port 0 is resolved once
// by the master and every worker gets that port; Addr reports it.
//
// # Lifecycle and signals
//
// Each worker has a monotonic id (never reused) and a stable slot index
// 0..Workers-1. Events (fork, online, listening, ready, exit, ...) reach
// Config.OnEvent. When Run's context ends the master stops accepting,
// sends SIGTERM to every worker, waits up to Config.ShutdownTimeout for them
// to finish their in-flight work and exit, kills what is left, and returns.
// A worker should treat SIGTERM as "drain and exit", as Go servers usually
// do with http.Server.Shutdown; a worker that does not handle SIGTERM simply
// exits.
//
// Workers never outlive the master: when the IPC channel reaches EOF the
// worker sends itself SIGTERM and, if it is still alive after OrphanGrace
// (500 ms), SIGKILL; on Linux the master also sets the parent-death signal.
//
// The library never prints, never exits the process on its own behalf
// (apart from the master-loss rule above) and never installs signal
// handlers: it takes a *slog.Logger, and main packages decide the rest.
//
// # Platforms
//
// Linux is the primary target. The master needs SOCK_SEQPACKET unix
// sockets with descriptor passing: Linux and the BSDs. On windows NewMaster
// returns an error wrapping ErrUnsupported, and Listen is net.Listen.
package sockshare
