package sockshare

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/sockshare/sockshare/internal/httpdrain"
)

// DrainTimeout is ServeHTTP's drain window: how long, after closing the
// listener, it lets the connections it holds send one more request (which
// is answered with Connection: close) before it closes those still idle.
const DrainTimeout = 5 * time.Second

// ServeHTTP serves srv on ln until ctx ends, then drains without failing a
// request, and returns nil (or the error that stopped serving).
//
// Draining, in order:
//
//  1. Every response from then on carries Connection: close. An HTTP/1.1
//     client learns from it, before it sends again, that the connection is
//     done, and opens a new one (to another worker). On HTTP/2 Go's server
//     turns the header into a GOAWAY and lets the streams in flight finish.
//  2. The listener is closed: under rr and leastconn the connections handed
//     but not yet accepted go back to the master for another worker; under
//     shared and reuseport they stay queued on the socket for the others.
//  3. For up to DrainTimeout ServeHTTP waits until every connection has
//     closed. An idle keep-alive connection is not closed at once, because
//     its client may be writing its next request at that very instant and
//     would see EOF or a reset for a request it cannot know was not served
//     (wrk, ab -k and pools that do not retry a POST count it as failed).
//     It gets the chance to send that request instead, and the answer
//     closes it. A connection accepted whose first request has not arrived
//     is answered the same way.
//  4. Then srv.Shutdown, bounded by shutdownTimeout: it closes the HTTP/1
//     connections still idle (idle for the whole window: the one residual
//     case, see docs/LIFECYCLE.md), sends GOAWAY on HTTP/2 connections and
//     waits for the handlers still running. It starts as soon as only
//     HTTP/2 connections are left, since GOAWAY loses nothing.
//
// A bare srv.Shutdown does none of this: it closes idle connections at
// once, and closes unanswered any connection whose request it reads after
// it began, including one accepted a moment before.
//
// ServeHTTP sets srv.ConnState, srv.ConnContext and srv.Handler, chaining
// any the caller set. A handler may remove the Connection: close header
// during a drain; its connection then stays open until the deadline.
func ServeHTTP(ctx context.Context, srv *http.Server, ln net.Listener, shutdownTimeout time.Duration) error {
	return httpdrain.Serve(ctx, srv, ln, shutdownTimeout, DrainTimeout)
}
