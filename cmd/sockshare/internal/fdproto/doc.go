// Package fdproto describes listening sockets to programs that did not
// open them, in the environment protocols such programs already read, and
// takes over the sockets sockshare itself is given by systemd.
//
// sockshare starts each worker with its listening sockets at descriptors
// 3, 4, ... in the order of the -listen entries, and tells it so in three
// dialects at once (WorkerEnv): systemd socket activation (LISTEN_FDS,
// LISTEN_FDNAMES; LISTEN_PID must equal the worker's own pid, so whoever
// execs the worker sets it, not this package), einhorn (EINHORN_FD_COUNT,
// EINHORN_FD_<i>, EINHORN_FDS) and Server::Starter (SERVER_STARTER_PORT).
// StripEnv removes all of them from an inherited environment first, so a
// worker never sees values meant for sockshare by its own parent.
//
// The other direction: when systemd socket-activates sockshare, Inherited
// takes the sockets it passed (sd_listen_fds(3) semantics) and Match pairs
// them with the -listen entries, by name, then by address. An entry left
// unmatched is for sockshare to bind; an inherited socket that nobody asked
// for is an error, because a socket systemd listens on that no worker
// serves makes clients hang.
//
// The environment functions and Match are pure. Inherited inspects
// descriptors with getsockname(2), so it needs a Unix; elsewhere it returns
// an error matching errors.ErrUnsupported when sockets were passed.
package fdproto
