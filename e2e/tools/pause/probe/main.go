// probe is the real test node's smallest workload: an HTTP server with a readiness endpoint,
// and a client that resolves a name through the pod's resolv.conf (cluster DNS) and GETs it.
// Over https it trusts the cluster CA and sends the pod's service account token, as an
// in-cluster API client does.
//
//	probe serve :8080                 answers / with the pod's hostname, /healthz with ok
//	probe get http://name:port/path   prints the body; exits 1 after 30 failed tries (1 s apart)
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: probe serve ADDR | probe get URL")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2])
	case "get":
		os.Exit(get(os.Args[2]))
	default:
		os.Exit(2)
	}
}

func serve(addr string) {
	host, _ := os.Hostname()
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "hello from %s\n", host) })
	fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, nil))
	os.Exit(1)
}

func get(url string) int {
	client := http.Client{Timeout: 3 * time.Second}
	if ca, err := os.ReadFile(serviceAccount + "/ca.crt"); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	token, _ := os.ReadFile(serviceAccount + "/token")
	for try := 1; try <= 30; try++ {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if len(token) > 0 && strings.HasPrefix(url, "https:") {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Print(string(body))
				return 0
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		fmt.Fprintf(os.Stderr, "try %d: %v\n", try, err)
		time.Sleep(time.Second)
	}
	return 1
}
