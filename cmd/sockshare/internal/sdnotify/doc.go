// Package sdnotify speaks the sd_notify protocol in both directions: it
// receives the readiness messages of the workers sockshare starts, and it
// sends sockshare's own to the service manager that started it.
//
// A worker is told where to report through NOTIFY_SOCKET, like a systemd
// service. Each worker gets its own Receiver: an AF_UNIX datagram socket
// bound in Linux's abstract namespace (the address is written
// "@sockshare/<pid>/<name>/<random>", '@' standing for the leading NUL), so
// there is no file to create, clean up or protect with permissions, and the
// name vanishes with the socket.
//
// A datagram tells who sent it only through the kernel: SO_PEERCRED
// describes the peer of a connected socket and says nothing about the
// sender of one datagram among many on an unconnected one. The receiver
// therefore sets SO_PASSCRED, so the kernel attaches SCM_CREDENTIALS (the
// sending process's pid, uid and gid, which an unprivileged sender cannot
// forge) to every datagram. Messages from any pid other than the one given
// to Expect are counted and dropped, those of processes the worker forks
// included: the worker must report itself (MAINPID is parsed, not obeyed).
//
// The receiver discards descriptors sent with SCM_RIGHTS (systemd's fd
// store, FDSTORE=1, is not supported): it closes them as they arrive.
//
// Notify and NotifyTo send the other way, to $NOTIFY_SOCKET, as
// sd_notify(3) does; MonotonicUsec gives the clock value RELOADING=1 wants
// in MONOTONIC_USEC.
//
// Linux only. Elsewhere Listen and NotifyTo return an error matching
// errors.ErrUnsupported, and Notify does nothing when NOTIFY_SOCKET is
// unset, as everywhere.
package sdnotify
