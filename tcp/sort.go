//go:build unix

package tcp

import "slices"

func sortHandoffs(h []handoff) {
	slices.SortFunc(h, func(a, b handoff) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
}
