package tcp

import "syscall"

// acceptQueued accepts on the non-blocking listening descriptor fd until
// its queue is empty (EAGAIN, not an error) or dst holds limit
// descriptors, and returns dst with the new ones appended: close-on-exec,
// non-blocking, owned by the caller. It retries EINTR and ECONNABORTED (a
// client that went away before its turn); any other error ends it.
func acceptQueued(fd int, dst []int, limit int) ([]int, error) {
	for len(dst) < limit {
		nfd, err := accept(fd)
		switch err {
		case nil:
			dst = append(dst, nfd)
		case syscall.EINTR, syscall.ECONNABORTED:
		case syscall.EAGAIN:
			return dst, nil
		default:
			return dst, err
		}
	}
	return dst, nil
}
