package reuse

// Linux 3.9+ hashes the 4-tuple over the group; SO_ATTACH_REUSEPORT_CBPF
// may be missing (Linux 4.5 for UDP). tcp_migrate_req is per network
// namespace: the file reflects the namespace of the process that reads it.
var thisOS = groupFacts{
	cannotBind:     "could not form a SO_REUSEPORT group on 127.0.0.1",
	balances:       true,
	cbpf:           true,
	migrateReqPath: "/proc/sys/net/ipv4/tcp_migrate_req",
}
