// inferops-pause holds a pod sandbox's namespaces open: it sleeps, reaps the orphans that
// end up under it (it is PID 1 when the pod shares its PID namespace), and exits on
// SIGTERM or SIGINT so the runtime can stop the sandbox at once.
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
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
