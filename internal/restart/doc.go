// Package restart is the supervisor's restart rule, apart from any
// process: backoff between restarts of a crashed slot, the crash window,
// and giving a slot up.
package restart
