package localstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/nixcache/nixcache/cache/localstore/sqlite" // read db.sqlite directly, as push does
	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	drvfile "github.com/nixcache/nixcache/storepath/drv"
)

// buildClosure builds a fresh closure like testdata/closure.nix (references,
// a diamond, self-references, a top with outputs "out" and "dev") with real
// Nix and returns its "out" output and its .drv, deleted when the test ends.
// The name says what the closure is for.
func buildClosure(t testing.TB, name string) (out, drv storepath.Path) {
	t.Helper()
	c := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "lsx-" + name, N: 5, Outputs: []string{"out", "dev"}, Root: true})
	return storepath.Path(c.Top), storepath.Path(c.Drv)
}

func lines(b []byte) []string { return strings.Fields(string(b)) }

// nixFacts is what real Nix says about one path.
type nixFacts struct {
	hash, size, deriver string
	refs                []string
	json                map[string]any
}

func queryNix(t testing.TB, p storepath.Path) nixFacts {
	t.Helper()
	q := func(flag string) []byte { return testenv.Nix(t, "nix-store", "--query", flag, string(p)) }
	f := nixFacts{
		hash:    strings.TrimSpace(string(q("--hash"))),
		size:    strings.TrimSpace(string(q("--size"))),
		deriver: strings.TrimSpace(string(q("--deriver"))),
		refs:    lines(q("--references")),
	}
	slices.Sort(f.refs)
	args := []string{"path-info", "--json", "--option", "substituters", ""}
	if p.IsDerivation() {
		args = append(args, "--derivation")
	}
	var list []map[string]any
	if err := json.Unmarshal(testenv.Nix(t, "nix", append(args, string(p))...), &list); err != nil || len(list) != 1 {
		t.Fatalf("nix path-info --json %s: %v (%d entries)", p, err, len(list))
	}
	f.json = list[0]
	return f
}

func compareFacts(t testing.TB, pi *PathInfo, f nixFacts) {
	t.Helper()
	if pi.NarHash.String() != f.hash {
		t.Errorf("%s: NarHash %s, nix-store --query --hash: %s", pi.Path, pi.NarHash, f.hash)
	}
	if strconv.FormatUint(pi.NarSize, 10) != f.size {
		t.Errorf("%s: NarSize %d, nix-store --query --size: %s", pi.Path, pi.NarSize, f.size)
	}
	var refs []string
	for _, r := range pi.References {
		refs = append(refs, string(r))
	}
	if !slices.Equal(refs, f.refs) {
		t.Errorf("%s: References %v, nix-store --query --references: %v", pi.Path, refs, f.refs)
	}
	wantDrv := f.deriver
	if wantDrv == "unknown-deriver" {
		wantDrv = ""
	}
	if string(pi.Deriver) != wantDrv {
		t.Errorf("%s: Deriver %q, nix-store --query --deriver: %q", pi.Path, pi.Deriver, f.deriver)
	}
	if rt, _ := f.json["registrationTime"].(float64); pi.RegistrationTime.Unix() != int64(rt) {
		t.Errorf("%s: RegistrationTime %d, nix path-info: %v", pi.Path, pi.RegistrationTime.Unix(), f.json["registrationTime"])
	}
	if u, _ := f.json["ultimate"].(bool); pi.Ultimate != u {
		t.Errorf("%s: Ultimate %v, nix path-info: %v", pi.Path, pi.Ultimate, u)
	}
	if ca, _ := f.json["ca"].(string); pi.CA != ca {
		t.Errorf("%s: CA %q, nix path-info: %q", pi.Path, pi.CA, ca)
	}
	var wantSigs, gotSigs []string
	if l, ok := f.json["signatures"].([]any); ok {
		for _, s := range l {
			wantSigs = append(wantSigs, s.(string))
		}
	}
	for _, s := range pi.Sigs {
		gotSigs = append(gotSigs, s.String())
	}
	if !slices.Equal(gotSigs, wantSigs) {
		t.Errorf("%s: Sigs %v, nix path-info: %v", pi.Path, gotSigs, wantSigs)
	}
}

// checkOrder checks that every path comes after all its references.
func checkOrder(t testing.TB, order []storepath.Path, refs map[storepath.Path][]string) {
	t.Helper()
	pos := make(map[storepath.Path]int)
	for i, p := range order {
		pos[p] = i
	}
	for _, p := range order {
		for _, r := range refs[p] {
			if rp := storepath.Path(r); rp != p && pos[rp] >= pos[p] {
				t.Errorf("closure order: %s (at %d) comes before its reference %s (at %d)", p, pos[p], rp, pos[rp])
			}
		}
	}
}

// TestLiveAgainstNix builds a closure with real Nix, signs a path with
// `nix store sign`, then checks PathInfo, Closure and DerivationOutputs
// against nix-store --query and nix path-info, reading the database and
// through the nix command fallback; both must agree exactly.
func TestLiveAgainstNix(t *testing.T) {
	ctx := context.Background()
	out, drv := buildClosure(t, "live")

	// Sign the output with a fresh key, as a user would.
	key := testenv.NixKeyPair(t, "localstore-test-1")
	skFile, pkFile := key.SecretFile, key.PublicFile
	testenv.Nix(t, "nix", "store", "sign", "--key-file", skFile, string(out))
	pk, err := signature.LoadPublicKeyFile(pkFile)
	if err != nil {
		t.Fatal(err)
	}

	roots := []storepath.Path{out, drv}
	var requisites []storepath.Path
	for _, l := range lines(testenv.Nix(t, "nix-store", "--query", "--requisites", string(out), string(drv))) {
		requisites = append(requisites, storepath.Path(l))
	}
	facts := make(map[storepath.Path]nixFacts)
	refs := make(map[storepath.Path][]string)
	for _, p := range requisites {
		facts[p] = queryNix(t, p)
		refs[p] = facts[p].refs
	}
	wantOutputs := lines(testenv.Nix(t, "nix-store", "--query", "--outputs", string(drv)))
	slices.Sort(wantOutputs)
	if len(wantOutputs) != 2 {
		t.Fatalf("nix-store --query --outputs %s: %v, want 2 outputs", drv, wantOutputs)
	}
	bogus := storepath.Path(string(out.Dir()) + "/00000000000000000000000000000000-lsx-missing")

	results := map[Mode][]*PathInfo{}
	for _, mode := range []Mode{ModeDB, ModeCLI} {
		t.Run(mode.String(), func(t *testing.T) {
			s, err := Open(ctx, Options{Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Mode() != mode {
				t.Fatalf("Mode() = %v", s.Mode())
			}
			infos, err := s.PathInfos(ctx, requisites)
			if err != nil {
				t.Fatal(err)
			}
			for i, pi := range infos {
				if pi.Path != requisites[i] {
					t.Fatalf("PathInfos[%d] is %s, want %s", i, pi.Path, requisites[i])
				}
				compareFacts(t, pi, facts[pi.Path])
			}
			results[mode] = infos

			// Batches: more paths than one SQL query or one nix call takes.
			var many []storepath.Path
			for len(many) <= max(batchSize, cliBatch) {
				many = append(many, requisites...)
			}
			manyInfos, err := s.PathInfos(ctx, many)
			if err != nil {
				t.Fatal(err)
			}
			for i, pi := range manyInfos {
				if !reflect.DeepEqual(pi, infos[i%len(infos)]) {
					t.Fatalf("PathInfos of %d paths: entry %d differs", len(many), i)
				}
			}

			// The signature Nix added verifies with Nix's public key over
			// Nix's fingerprint.
			pi, err := s.PathInfo(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			var rs []string
			for _, r := range pi.References {
				rs = append(rs, string(r))
			}
			fp := fmt.Sprintf("1;%s;%s;%d;%s", pi.Path, pi.NarHash, pi.NarSize, strings.Join(rs, ","))
			if err := signature.Verify(fp, pi.Sigs, []signature.PublicKey{pk}); err != nil {
				t.Errorf("signature from nix store sign does not verify: %v (sigs %v)", err, pi.Sigs)
			}

			closure, err := s.Closure(ctx, roots)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(slices.Sorted(slices.Values(closure)), slices.Sorted(slices.Values(requisites))) {
				t.Errorf("Closure = %v\nnix-store --query --requisites = %v", closure, requisites)
			}
			checkOrder(t, closure, refs)
			again, err := s.Closure(ctx, []storepath.Path{drv, out, out})
			if err != nil || !slices.Equal(again, closure) {
				t.Errorf("Closure not deterministic: %v, %v", again, err)
			}

			outs, err := s.DerivationOutputs(ctx, drv)
			if err != nil {
				t.Fatal(err)
			}
			var gotOuts []string
			for _, o := range outs {
				gotOuts = append(gotOuts, string(o))
			}
			if !slices.Equal(gotOuts, wantOutputs) {
				t.Errorf("DerivationOutputs = %v, nix-store --query --outputs = %v", gotOuts, wantOutputs)
			}

			if _, err := s.PathInfo(ctx, bogus); !errors.Is(err, ErrNotValid) || !strings.Contains(err.Error(), string(bogus)) {
				t.Errorf("PathInfo(bogus) error = %v, want ErrNotValid naming the path", err)
			}
			if _, err := s.PathInfos(ctx, []storepath.Path{out, bogus}); !errors.Is(err, ErrNotValid) {
				t.Errorf("PathInfos(out, bogus) error = %v, want ErrNotValid", err)
			}
			if ok, err := s.IsValid(ctx, bogus); ok || err != nil {
				t.Errorf("IsValid(bogus) = %v, %v", ok, err)
			}
			if _, err := s.Closure(ctx, []storepath.Path{out, bogus}); !errors.Is(err, ErrNotValid) {
				t.Errorf("Closure(bogus) error = %v, want ErrNotValid", err)
			}
			if _, err := s.DerivationOutputs(ctx, bogus+".drv"); !errors.Is(err, ErrNotValid) {
				t.Errorf("DerivationOutputs(bogus) error = %v, want ErrNotValid", err)
			}
		})
	}
	if a, b := results[ModeDB], results[ModeCLI]; a != nil && b != nil && !reflect.DeepEqual(a, b) {
		for i := range a {
			if !reflect.DeepEqual(a[i], b[i]) {
				t.Errorf("database and nix path-info differ:\n db: %+v\ncli: %+v", a[i], b[i])
			}
		}
	}

	// The .drv parser agrees with nix-store --query --outputs too.
	m, err := drvfile.ReadOutputs(string(drv))
	if err != nil {
		t.Fatal(err)
	}
	var fromFile []string
	for _, p := range slices.Sorted(maps.Values(m)) {
		fromFile = append(fromFile, string(p))
	}
	if !slices.Equal(fromFile, wantOutputs) {
		t.Errorf("drv.ReadOutputs = %v, nix-store --query --outputs = %v", fromFile, wantOutputs)
	}
}

// TestLiveAutoMode checks that ModeAuto reads the database as root, and
// falls back to the nix command when the database is not there.
func TestLiveAutoMode(t *testing.T) {
	testenv.RequireNix(t)
	ctx := context.Background()
	s, err := Open(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode() != ModeDB {
		t.Errorf("Mode() = %v as root, want db", s.Mode())
	}
	s.Close()
	s, err = Open(ctx, Options{DBPath: filepath.Join(t.TempDir(), "db.sqlite")})
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode() != ModeCLI {
		t.Errorf("Mode() = %v without a database, want cli", s.Mode())
	}
	s.Close()
	if _, err := Open(ctx, Options{Mode: ModeDB, DBPath: filepath.Join(t.TempDir(), "db.sqlite")}); err == nil {
		t.Errorf("ModeDB without a database: no error")
	}
	notDB := filepath.Join(t.TempDir(), "db.sqlite")
	if err := os.WriteFile(notDB, []byte("not sqlite"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, Options{Mode: ModeDB, DBPath: notDB}); err == nil {
		t.Errorf("ModeDB on a non-database: no error")
	}
	s, err = Open(ctx, Options{DBPath: notDB})
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode() != ModeCLI {
		t.Errorf("Mode() = %v on a non-database, want cli", s.Mode())
	}
	s.Close()
}

// TestLiveConcurrentBuild holds a read transaction and keeps querying while
// real Nix builds and registers new paths: the build must not block, our
// reads must not fail, our connection must refuse writes, and we must leave
// no files behind besides Nix's own WAL files.
func TestLiveConcurrentBuild(t *testing.T) {
	testenv.RequireNix(t)
	ctx := context.Background()
	dbDir := filepath.Dir(DefaultDBPath())
	known, _ := buildClosure(t, "live")
	before := dirNames(t, dbDir)

	s, err := Open(ctx, Options{Mode: ModeDB})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src := s.src.(*dbSource)
	if _, err := src.db.ExecContext(ctx, `CREATE TABLE localstore_probe(x)`); err == nil {
		t.Fatal("read-only connection accepted a write")
	}

	// A long read transaction, open across the whole build.
	tx, err := src.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n0 int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ValidPaths`).Scan(&n0); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	var reads atomic.Int64
	stop := make(chan struct{})
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Closure(ctx, []storepath.Path{known}); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			reads.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	start := time.Now()
	out, _ := buildClosure(t, fmt.Sprintf("concurrent-%d", time.Now().UnixNano()))
	close(stop)
	wg.Wait()
	t.Logf("nix-build with a reader holding a transaction: %v; %d closure reads meanwhile", time.Since(start), reads.Load())
	if reads.Load() == 0 {
		t.Error("no read ran during the build")
	}
	select {
	case err := <-errs:
		t.Fatalf("read during build failed: %v", err)
	default:
	}

	// The open transaction keeps its snapshot; a new read sees the build.
	var n1 int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM ValidPaths`).Scan(&n1); err != nil {
		t.Fatal(err)
	}
	if n1 != n0 {
		t.Errorf("snapshot changed inside a transaction: %d then %d rows", n0, n1)
	}
	tx.Rollback()
	pi, err := s.PathInfo(ctx, out)
	if err != nil {
		t.Fatalf("new path not visible after the build: %v", err)
	}
	compareFacts(t, pi, queryNix(t, out))
	s.Close()

	after := dirNames(t, dbDir)
	for name := range after {
		if !before[name] && name != "db.sqlite-wal" && name != "db.sqlite-shm" {
			t.Errorf("file %s appeared in %s", name, dbDir)
		}
	}
}

func dirNames(t testing.TB, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]bool)
	for _, e := range ents {
		m[e.Name()] = true
	}
	return m
}

// TestLiveBuilt: what Nix just built (and says is "ultimate") is listed by
// Built, found by row id and by registration time; the .drv and a source
// added with nix-store --add are not; the nix command cannot answer.
func TestLiveBuilt(t *testing.T) {
	testenv.RequireNix(t)
	ctx := context.Background()
	s, err := Open(ctx, Options{Mode: ModeDB})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, err := s.LastID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Second) // registrationTime has whole seconds
	c := testenv.BuildClosure(t, testenv.ClosureSpec{Name: "lsx-built", N: 3, Outputs: []string{"out", "dev"}})
	src := filepath.Join(t.TempDir(), "lsx-source-"+testenv.Nonce())
	if err := os.WriteFile(src, []byte("not built"), 0o644); err != nil {
		t.Fatal(err)
	}
	added := strings.TrimSpace(string(testenv.Nix(t, "nix-store", "--add", src)))
	t.Cleanup(func() { _, _ = testenv.NixCmd("nix-store", "--delete", added) })
	after, err := s.LastID(ctx)
	if err != nil || after <= before {
		t.Fatalf("LastID %d after the build, %d before (%v)", after, before, err)
	}
	var info []struct {
		Path     string `json:"path"`
		Ultimate bool   `json:"ultimate"`
	}
	if err := json.Unmarshal(testenv.Nix(t, "nix", append([]string{"--extra-experimental-features", "nix-command", "path-info", "--json"}, c.Paths...)...), &info); err != nil {
		t.Fatal(err)
	}
	for _, pi := range info {
		if !pi.Ultimate {
			t.Fatalf("Nix says %s is not ultimate (built here)", pi.Path)
		}
	}
	far := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name    string
		since   time.Time
		afterID int64
		want    bool
	}{
		{"by row id", far, before, true},
		{"by registration time", start, math.MaxInt64, true},
		{"neither", far, after, false},
	} {
		got, err := s.Built(ctx, tc.since, tc.afterID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range c.Paths {
			if slices.Contains(got, storepath.Path(p)) != tc.want {
				t.Errorf("%s: %s listed: %v, want %v", tc.name, p, !tc.want, tc.want)
			}
		}
		for _, p := range []string{c.Drv, added} {
			if slices.Contains(got, storepath.Path(p)) {
				t.Errorf("%s: %s (not built) listed", tc.name, p)
			}
		}
	}
	cli, err := Open(ctx, Options{Mode: ModeCLI})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Built(ctx, start, before); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Built through the nix command: %v, want ErrUnsupported", err)
	}
}
