// coredns is CoreDNS with only the plugins the real test node's cluster DNS uses: the
// kubernetes plugin answers Service and Pod names from the API server; nothing forwards
// queries anywhere, so a name outside cluster.local gets an error, never an upstream lookup.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
