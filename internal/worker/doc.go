// Package worker is the worker side of sockshare: the client of the
// master's IPC server, in a process the master started. It reads and
// removes the worker markers at initialisation, before user code runs,
// asks the master for listeners and turns its replies into net.Listener
// and net.PacketConn values. Package sockshare's worker API (Listen,
// ListenPacket, Ready, Send, ...) is a thin layer over it; nothing here
// knows the master's side.
package worker
