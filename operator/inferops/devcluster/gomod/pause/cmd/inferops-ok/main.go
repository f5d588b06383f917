// inferops-ok is what test containers on the real node run.
//
//	inferops-ok echo WORDS...   prints WORDS and exits 0 (a Job; its output checks `kubectl logs`)
//	inferops-ok serve PORT      answers "ok" to every HTTP request (a Service backend)
package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "echo" {
		fmt.Println(strings.Join(os.Args[2:], " "))
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		fmt.Println("serving on :" + os.Args[2])
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
		if err := http.ListenAndServe(":"+os.Args[2], nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintln(os.Stderr, "usage: inferops-ok echo WORDS... | inferops-ok serve PORT")
	os.Exit(2)
}
