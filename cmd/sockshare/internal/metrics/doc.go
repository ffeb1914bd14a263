// Package metrics serves the runner's Prometheus metrics (/metrics) and its
// health check (/healthz).
//
// It knows nothing of the master: the runner describes itself in a
// [Snapshot] of plain values, and an [Exporter] asks its [Source] for one
// at every request, so a scrape sees the state of that moment and the
// package keeps no counters of its own. The metrics are registered on a
// registry of the Exporter's own, never on the client library's global
// one, together with the Go runtime and process collectors of the runner
// (the master process, not its workers).
//
// The metrics, all gauges or counters computed from the Snapshot:
//
//	sockshare_ready                        1 when the Snapshot is Ready, else 0
//	sockshare_workers{state}               workers per state; every state of
//	                                       Snapshot.States (default starting,
//	                                       ready, stopping) is present, 0 when none
//	sockshare_slots                        worker slots (len(Snapshot.Slots))
//	sockshare_worker_restarts_total{slot}  restarts of each slot's worker
//	sockshare_reloads_total                rolling reloads started
//	sockshare_listener_info{listener,policy,dispatch}  1 per shared address
//	sockshare_connections_total{listener,slot}  connections sent to each slot,
//	                                       where the master or the kernel
//	                                       counts them
//	sockshare_pending_connections{listener}  accepted, not yet taken by a worker
//
// Only cmd/sockshare imports this package; the client library stays out of
// the sockshare library's import graph.
package metrics
