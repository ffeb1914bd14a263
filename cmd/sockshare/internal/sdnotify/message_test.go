package sdnotify

import (
	"errors"
	"maps"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Message
	}{
		{"READY=1", Message{Ready: true, Fields: map[string]string{"READY": "1"}}},
		{"READY=1\nSTATUS=serving on :80\n", Message{Ready: true, Status: "serving on :80",
			Fields: map[string]string{"READY": "1", "STATUS": "serving on :80"}}},
		{"STOPPING=1", Message{Stopping: true, Fields: map[string]string{"STOPPING": "1"}}},
		{"RELOADING=1\nMONOTONIC_USEC=123", Message{Reloading: true,
			Fields: map[string]string{"RELOADING": "1", "MONOTONIC_USEC": "123"}}},
		{"READY=0", Message{Fields: map[string]string{"READY": "0"}}},
		{"READY=1\nREADY=0", Message{Fields: map[string]string{"READY": "0"}}},
		{"MAINPID=42", Message{MainPID: 42, Fields: map[string]string{"MAINPID": "42"}}},
		{"MAINPID=x", Message{Fields: map[string]string{"MAINPID": "x"}}},
		{"MAINPID=-3", Message{Fields: map[string]string{"MAINPID": "-3"}}},
		{"STATUS=a=b", Message{Status: "a=b", Fields: map[string]string{"STATUS": "a=b"}}},
		{"STATUS=", Message{Fields: map[string]string{"STATUS": ""}}},
		{"X_UNKNOWN=7\nnonsense\n=novalue\n\nREADY=1", Message{Ready: true,
			Fields: map[string]string{"X_UNKNOWN": "7", "READY": "1"}}},
		{"", Message{Fields: map[string]string{}}},
	}
	for _, tt := range tests {
		got := Parse([]byte(tt.in))
		if got.Ready != tt.want.Ready || got.Stopping != tt.want.Stopping || got.Reloading != tt.want.Reloading ||
			got.Status != tt.want.Status || got.MainPID != tt.want.MainPID || got.PID != 0 ||
			!maps.Equal(got.Fields, tt.want.Fields) {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// Datagrams held before Expect are sorted by it: the expected pid's are
// accepted in order, others dropped, and beyond the first 16 none is kept.
func TestExpectSortsHeldMessages(t *testing.T) {
	r := newReceiver(nil, "@test")
	r.receive(Message{PID: 9, Status: "foreign"})
	for i := range 19 {
		r.receive(Message{PID: 5, MainPID: i, Ready: i == 3})
	}
	r.Expect(5)
	s := r.Stats()
	if s.Accepted != 15 || s.Foreign != 1 || s.Early != 4 {
		t.Fatalf("stats %+v, want 15 accepted, 1 foreign, 4 early", s)
	}
	for i := range 15 {
		if m := <-r.Messages(); m.MainPID != i || m.PID != 5 {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	if m := r.readyMessage(); m.MainPID != 3 {
		t.Fatalf("ready message %+v, want the one with MainPID 3", m)
	}
	r.receive(Message{PID: 9})
	r.receive(Message{PID: 5})
	if s := r.Stats(); s.Accepted != 16 || s.Foreign != 2 {
		t.Fatalf("after Expect: %+v", s)
	}
}

func TestErrUnsupportedMatches(t *testing.T) {
	if !errors.Is(errUnsupported, errors.ErrUnsupported) {
		t.Fatal("errUnsupported does not match errors.ErrUnsupported")
	}
}
