// kstatus computes the kstatus of Kubernetes objects the way Flux, kpt and cli-utils' own
// waiters do: status.Compute from sigs.k8s.io/cli-utils/pkg/kstatus/status, on the object as
// the API server returned it, with nothing fetched from a cluster.
//
//	kubectl get ocrjobs -o json | kstatus
//	kubectl get ocrcluster pool -o json | kstatus
//
// stdin holds one JSON object, or a list (kind: List, or any *List with items, as
// `kubectl get -o json` prints); one JSON line per object goes to stdout:
//
//	{"kind":"OcrJob","namespace":"t-1","name":"fifty","status":"Current","message":"Resource is current"}
//
// status is one of InProgress, Current, Failed, Terminating (NotFound and Unknown come only
// from cli-utils' pollers, never from Compute).
//
// Exit status: 0 when every object's status was computed, 1 when Compute refused one (its
// error goes to stderr, the other objects are still printed), 2 when stdin is not a JSON object.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading stdin:", err)
		os.Exit(2)
	}
	// apimachinery's decoder, as client-go's: whole numbers become int64, which is what
	// status.Compute reads metadata.generation and status.observedGeneration as
	var doc map[string]interface{}
	if err := utiljson.Unmarshal(data, &doc); err != nil || doc == nil {
		fmt.Fprintln(os.Stderr, "kstatus: stdin is not one JSON object:", err)
		os.Exit(2)
	}
	objects := []map[string]interface{}{doc}
	if kind, _ := doc["kind"].(string); strings.HasSuffix(kind, "List") {
		items, ok := doc["items"].([]interface{})
		if !ok && doc["items"] != nil {
			fmt.Fprintln(os.Stderr, "kstatus: a", kind, "whose items is not a list")
			os.Exit(2)
		}
		objects = objects[:0]
		for i, item := range items {
			obj, ok := item.(map[string]interface{})
			if !ok {
				fmt.Fprintf(os.Stderr, "kstatus: item %d of the %s is not an object\n", i, kind)
				os.Exit(2)
			}
			objects = append(objects, obj)
		}
	}

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	failed := false
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		res, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s %s/%s: %v\n", u.GetKind(), u.GetNamespace(), u.GetName(), err)
			failed = true
			continue
		}
		if err := enc.Encode(line{u.GetKind(), u.GetNamespace(), u.GetName(), string(res.Status), res.Message}); err != nil {
			fmt.Fprintln(os.Stderr, "kstatus: writing stdout:", err)
			os.Exit(2)
		}
	}
	if failed {
		out.Flush()
		os.Exit(1)
	}
}
