// Command etcd is the etcd server, built from the published server module so the
// local control plane needs no source checkout.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
