// Package sockfd holds sockets that a sockshare master keeps open for its
// workers but never reads or accepts on.
//
// Such a socket must not stay in the master's Go netpoller: epoll reports
// every connection or datagram that arrives on it, waking the master only
// for the runtime to find no goroutine waiting (measured: about one wake-up
// per datagram or connection, a tenth of a core under load). Hold takes the
// socket out: it duplicates the descriptor (close-on-exec) and closes the
// net.Conn or net.Listener, which deregisters it from epoll before the close;
// the duplicate keeps the socket open with nothing watching it here.
package sockfd
