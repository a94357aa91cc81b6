// argocd-health runs Argo CD resource health checks (health.lua beside a health_test.yaml, the
// layout of Argo CD's resource_customizations/<group>/<Kind>/) under gopher-lua, the Lua Argo CD
// embeds, the way Argo CD runs them, and compares each result with the test's healthStatus.
//
//	argocd-health [-v] [-libs both|argocd-cm|builtin] DIR...
//
// Every health.lua under each DIR is checked against every case of its health_test.yaml:
//
//	tests:
//	- healthStatus: {status: Progressing, message: "..."}
//	  inputPath: testdata/progressing.yaml
//
// Argo CD runs a script with one of two library sets. A script from argocd-cm
// (resource.customizations.health.<group>_<Kind>) gets only the package, base and table
// libraries, and an os holding time and date that only require("os") returns: no string, no
// math. A built-in script (or one with resource.customizations.useOpenLibs.<group>_<Kind>) gets
// every standard library. By default each case runs under both, and must give the expected
// status in both.
//
// The object is read as Argo CD reads it (YAML to JSON to maps, lists, strings, numbers, bools)
// and set as the global obj; the script's return value is read back as Argo CD reads it: a
// table whose status and message are strings, an unknown status becoming Unknown.
//
// Exit status: 0 when every case matches, 1 when one does not (each mismatch is printed as a
// diff), 2 when the tests cannot be read.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// The health statuses Argo CD accepts from a script; any other becomes Unknown.
var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// What Argo CD reports for a status it does not know.
const invalidStatusMessage = "Lua returned an invalid health status"

// Argo CD gives a script one second.
const scriptTimeout = time.Second

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

type testCase struct {
	InputPath    string        `json:"inputPath"`
	HealthStatus *healthStatus `json:"healthStatus"`
}

type testFile struct {
	Tests []testCase `json:"tests"`
}

type libSet struct {
	name string
	open func() *lua.LState
}

var libSets = map[string]libSet{
	"argocd-cm": {"argocd-cm libraries", restrictedState},
	"builtin":   {"all standard libraries", openState},
}

func main() {
	verbose := flag.Bool("v", false, "print every case, not only the mismatches")
	libs := flag.String("libs", "both", "library sets to run each case under: both, argocd-cm or builtin")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-v] [-libs both|argocd-cm|builtin] DIR...\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var sets []libSet
	switch *libs {
	case "both":
		sets = []libSet{libSets["argocd-cm"], libSets["builtin"]}
	case "argocd-cm", "builtin":
		sets = []libSet{libSets[*libs]}
	default:
		fmt.Fprintf(os.Stderr, "error: -libs %q: want both, argocd-cm or builtin\n", *libs)
		os.Exit(2)
	}

	var scripts []string
	for _, root := range flag.Args() {
		found, err := findScripts(root)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			os.Exit(2)
		}
		if len(found) == 0 {
			fmt.Fprintf(os.Stderr, "error: no health.lua under %s\n", root)
			os.Exit(2)
		}
		scripts = append(scripts, found...)
	}

	passed, failed := 0, 0
	for _, script := range scripts {
		p, f, err := checkScript(script, sets, *verbose)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			os.Exit(2)
		}
		passed += p
		failed += f
	}
	fmt.Printf("%d scripts, %d cases passed, %d failed (each case under: %s)\n",
		len(scripts), passed, failed, setNames(sets))
	if failed > 0 {
		os.Exit(1)
	}
}

func setNames(sets []libSet) string {
	names := make([]string, len(sets))
	for i, s := range sets {
		names[i] = s.name
	}
	return strings.Join(names, ", ")
}

func findScripts(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "health.lua" {
			out = append(out, path)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// checkScript runs every case of the health_test.yaml beside script; returns passed and failed cases.
func checkScript(script string, sets []libSet, verbose bool) (int, int, error) {
	dir := filepath.Dir(script)
	name := filepath.Join(filepath.Base(filepath.Dir(dir)), filepath.Base(dir)) // <group>/<Kind>
	source, err := os.ReadFile(script)
	if err != nil {
		return 0, 0, err
	}
	testPath := filepath.Join(dir, "health_test.yaml")
	raw, err := os.ReadFile(testPath)
	if err != nil {
		return 0, 0, fmt.Errorf("%s has no health_test.yaml beside it: %w", script, err)
	}
	var tests testFile
	if err := yaml.UnmarshalStrict(raw, &tests); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", testPath, err)
	}
	if len(tests.Tests) == 0 {
		return 0, 0, fmt.Errorf("%s: no tests", testPath)
	}
	passed, failed := 0, 0
	for i, tc := range tests.Tests {
		if tc.InputPath == "" || tc.HealthStatus == nil {
			return 0, 0, fmt.Errorf("%s: test %d needs both inputPath and healthStatus", testPath, i+1)
		}
		obj, err := readObject(filepath.Join(dir, tc.InputPath))
		if err != nil {
			return 0, 0, fmt.Errorf("%s: test %d: %w", testPath, i+1, err)
		}
		for _, set := range sets {
			got, err := runHealth(set, string(source), obj)
			label := fmt.Sprintf("%s %s [%s]", name, tc.InputPath, set.name)
			if diff := compare(*tc.HealthStatus, got, err); diff != "" {
				failed++
				fmt.Printf("FAIL %s\n%s", label, diff)
				continue
			}
			passed++
			if verbose {
				fmt.Printf("ok   %s: %s %q\n", label, got.Status, got.Message)
			}
		}
	}
	if failed == 0 {
		fmt.Printf("ok   %s: %d cases\n", name, len(tests.Tests))
	}
	return passed, failed, nil
}

func readObject(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

func compare(want healthStatus, got *healthStatus, err error) string {
	var b strings.Builder
	if err != nil {
		fmt.Fprintf(&b, "    want: %s %q\n    got:  error: %v\n", want.Status, want.Message, err)
		return b.String()
	}
	if got == nil {
		fmt.Fprintf(&b, "    want: %s %q\n    got:  nil (the script returned no health status)\n",
			want.Status, want.Message)
		return b.String()
	}
	if want.Status != got.Status {
		fmt.Fprintf(&b, "    status:  want %s\n             got  %s\n", want.Status, got.Status)
	}
	if want.Message != got.Message {
		fmt.Fprintf(&b, "    message: want %q\n             got  %q\n", want.Message, got.Message)
	}
	return b.String()
}

// restrictedState has the libraries Argo CD opens for a script from argocd-cm: package, base,
// table; os (time and date only) is there for require("os") and is not a global.
func restrictedState() *lua.LState {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			panic(err)
		}
	}
	l.PreloadModule(lua.OsLibName, safeOs)
	return l
}

// safeOs is the loader of require("os"): gopher-lua's own os.time and os.date, nothing else.
func safeOs(l *lua.LState) int {
	loaded := l.GetField(l.Get(lua.RegistryIndex), "_LOADED")
	// open the whole os library, keep the two safe functions, and put back the global os and
	// require's entry for it as they were (require then stores the safe table there)
	global, entry := l.GetGlobal(lua.OsLibName), l.GetField(loaded, lua.OsLibName)
	l.Push(l.NewFunction(lua.OpenOs))
	l.Call(0, 1)
	full := l.CheckTable(-1)
	l.Pop(1)
	l.SetGlobal(lua.OsLibName, global)
	l.SetField(loaded, lua.OsLibName, entry)
	safe := l.NewTable()
	for _, fn := range []string{"time", "date"} {
		safe.RawSetString(fn, full.RawGetString(fn))
	}
	l.Push(safe)
	return 1
}

// openState has every standard library, as Argo CD gives a built-in script.
func openState() *lua.LState {
	return lua.NewState()
}

// runHealth runs the script with obj as its global obj and reads the status it returns.
func runHealth(set libSet, source string, obj map[string]any) (*healthStatus, error) {
	l := set.open()
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	fn, err := l.LoadString(source)
	if err != nil {
		return nil, err
	}
	l.Push(fn)
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
		}
		return nil, err
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return nil, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("the script returned a %s, Argo CD expects a table", ret.Type())
	}
	hs := ret.(*lua.LTable)
	status, err := stringField(hs, "status")
	if err != nil {
		return nil, err
	}
	message, err := stringField(hs, "message")
	if err != nil {
		return nil, err
	}
	if !validStatus[status] {
		return &healthStatus{Status: "Unknown", Message: invalidStatusMessage}, nil
	}
	return &healthStatus{Status: status, Message: message}, nil
}

func stringField(t *lua.LTable, key string) (string, error) {
	switch v := t.RawGetString(key).(type) {
	case lua.LString:
		return string(v), nil
	case *lua.LNilType:
		return "", nil
	default:
		return "", fmt.Errorf("hs.%s is a %s, Argo CD expects a string", key, v.Type())
	}
}

// toLua converts a JSON-decoded value to Lua: maps to tables keyed by string, lists to tables
// indexed from 1, numbers, strings, bools; null to nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	default:
		return lua.LNil
	}
}
