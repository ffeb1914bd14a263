// Package ipc encodes and decodes the messages a sockshare master and its
// workers exchange over their socketpair.
//
// Every message is one SOCK_SEQPACKET datagram (passfd adds one framing byte
// in front): a type byte, a uvarint sequence number, then the fields of that
// type. File descriptors travel beside the bytes as SCM_RIGHTS; the message
// says how many to expect, and a receiver closes any it did not expect.
//
// Decode is strict: unknown types, fields that run past the end, lengths
// over their bounds and trailing bytes are errors wrapping ErrMalformed. A
// master that meets one ends that worker's channel, never itself.
//
// Connection ids carry the listener id in their top bits (see ConnID), so an
// acknowledgement names connections without naming listeners.
package ipc
