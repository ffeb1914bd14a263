// Package httpdrain serves an http.Server on a worker's listener and
// drains it without failing a request: the implementation of
// sockshare.ServeHTTP, whose documentation describes the drain.
package httpdrain
