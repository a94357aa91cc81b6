// pause is the sandbox ("infra") container of every pod on the real test node: it holds the
// pod's namespaces open until it is told to stop, and reaps orphans when it is the pod's
// PID 1 (shareProcessNamespace). Static, no libc: the image is this one file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			return
		}
		for {
			if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	}
}
