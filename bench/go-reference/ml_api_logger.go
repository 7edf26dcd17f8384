// The vendor's example receiver, rebuilt for the benchmark from what SPEC section 2 says it does:
// a TLS listener on LOGGER_IP:LOGGER_PORT (0.0.0.0 and a random port when unset) with the
// certificate and key named by LOGGER_CERT and LOGGER_KEY, HTTP/1.1 and HTTP/2; one handler at
// /log, for any method, that reads the whole body and prints it to stdout followed by a newline,
// and answers 200 with an empty body every time; 404 for any other path. No limits, no timeouts.
//
// Standard library only. bench/run.sh builds it with `go build` (Debian's golang-go).
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
)

func main() {
	ip := os.Getenv("LOGGER_IP")
	if ip == "" {
		ip = "0.0.0.0"
	}
	port := os.Getenv("LOGGER_PORT")
	if port == "" {
		port = "0"
	}
	http.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Println(string(body))
	})
	log.Fatal(http.ListenAndServeTLS(ip+":"+port, os.Getenv("LOGGER_CERT"), os.Getenv("LOGGER_KEY"), nil))
}
