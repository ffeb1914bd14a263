// Package policy names the strategies sockshare uses to share one address
// among several worker processes, parses them, and holds the dispatch pickers
// that choose a worker for each connection under the dispatching policies.
//
// The policies are:
//
//   - shared (alias none): the master binds once and every worker accepts on
//     the same listening socket. The kernel and Go's netpoller decide which
//     worker wins each connection; nothing is spent per connection, but the
//     balance can be poor with few long-lived connections.
//   - rr (alias round-robin), the default as in Node.js: the master accepts
//     and hands each connection's fd to the next worker in turn. Counts are
//     exact; the master pays one fd handoff per connection.
//   - leastconn: like rr, but the master hands each connection to the worker
//     with the fewest open connections (workers report closes, batched).
//   - reuseport: one SO_REUSEPORT socket per worker slot; the kernel hashes
//     each connection's 4-tuple to a socket. Statistically fair.
//   - sticky: every connection from one client IP address goes to the same
//     slot while that slot has a worker, through a consistent (Maglev)
//     lookup table, so that when a slot goes away only its clients move.
//     Datagrams: sticky under kernel dispatch, else reuseport's hash.
//
// Under kernel dispatch a BPF program applies rr and sticky at SYN time
// with the same rules (the Maglev table and HashIP are shared with it).
//
// The package knows nothing about sockets or processes. A new dispatching
// policy is one file defining a Picker (a ClientPicker if it needs the
// client's address, as sticky does) plus one line in the registry in
// policy.go.
package policy
