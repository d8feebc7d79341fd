package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/nixcache/nixcache/internal/faultproxy"
	"github.com/nixcache/nixcache/internal/testenv"
)

// FleetOptions shapes a fleet trial (Harness.Fleet): several builders, each
// with its own queue and upload-daemon, push overlapping closures into one
// bucket of a distributed MinIO while one of its nodes is SIGKILLed and
// restarted and the proxy answers bursts of 503 SlowDown.
type FleetOptions struct {
	// Cluster is the distributed MinIO; the harness's S3 must be its
	// entrance over WriteNodes (testenv.MinIOCluster.S3).
	Cluster *testenv.MinIOCluster
	// WriteNodes are the nodes the daemons' requests reach (round robin,
	// as behind a load balancer); the killed node is one of them. ReadNode,
	// another one, is where the checker and Nix read the cache from.
	WriteNodes []int
	ReadNode   int
	// Daemons is the number of builders, each with its own queue and
	// upload-daemon (default 4).
	Daemons int
	// Rounds is the number of nix-builds each builder runs, one after
	// the other (default 2).
	Rounds int
	// Shared is the number of derivations every build depends on, a chain
	// built once (by whichever builder gets there first) and pushed by
	// every daemon as part of its closures (default 6). Own is the number
	// of derivations of each build on top of it (default 3). Blob is the
	// random bytes in each of those paths (default 64 KiB).
	Shared, Own, Blob int
	// NoKill leaves the cluster's nodes alone; NoSlowDown the proxy.
	NoKill, NoSlowDown bool
	// Down is how long the killed node stays down (default 2 s).
	Down time.Duration
}

// FleetResult is what one fleet trial did and found.
type FleetResult struct {
	Daemons, Builds int
	// Paths is the number of store paths that had to reach the cache;
	// Lost and Broken are those missing or refused by Nix, and the
	// invariant violations (both must be empty).
	Paths        int
	Lost, Broken []string
	// Killed is the node SIGKILLed (0: none), KilledDuring the request
	// that was being forwarded at that moment (a multipart part, when the
	// kill struck mid-upload as intended).
	Killed       int
	KilledDuring string
	// SlowDowns is the number of 503 SlowDown answers of the bursts.
	SlowDowns int
	// Requests is the number of requests the daemons made.
	Requests int
	// All objects: uploads stored, failed upload requests, re-uploads
	// after a failure, re-uploads without one (see Uploads).
	Stored, Failed, Retried, Needless int
	// NARs: distinct NAR files stored, stores in all, and the stores beyond
	// the first of each file: after a failed request (Retried) or without
	// one (Duplicates: daemons uploading the same NAR at once).
	NARs, NARStores, NARRetried, NARDuplicates int
	// NARRaced counts the Duplicates whose daemon had found the NAR file
	// missing before another's upload stored it (Uploads.Raced); the rest
	// were uploaded although the file was there when checked.
	NARRaced int
	// Parts is the number of multipart parts stored, PartsResent those
	// stored again for the same NAR file and part number (by a retry, or by
	// a second daemon resuming the same unfinished upload).
	Parts, PartsResent int
	// NARBytes is the bytes of the NAR files stored once each; DupBytes
	// the bytes sent again by Duplicates.
	NARBytes, DupBytes int64
	Duration           time.Duration
}

// Fleet runs one fleet trial into a fresh public bucket and judges it: every
// queued path (and its closure) must verify with real Nix reading over HTTP
// through opts.ReadNode, no narinfo may lack its NAR or a reference, and the
// NAR uploads are counted. It returns an error only when the trial could not
// be carried out (wrapping ErrTrial).
func (h *Harness) Fleet(ctx context.Context, opts FleetOptions) (FleetResult, error) {
	opts = opts.withDefaults()
	res := FleetResult{Daemons: opts.Daemons, Builds: opts.Daemons * opts.Rounds}
	if opts.Cluster == nil || len(opts.WriteNodes) == 0 || opts.ReadNode == 0 {
		return res, fmt.Errorf("%w: FleetOptions needs Cluster, WriteNodes and ReadNode", ErrTrial)
	}
	start := time.Now()
	h.trialNo++
	dir := filepath.Join(h.cfg.WorkDir, fmt.Sprintf("fleet-%d", h.trialNo))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, fmt.Errorf("%w: %w", ErrTrial, err)
	}
	defer os.RemoveAll(dir)
	bucket := fmt.Sprintf("fleet-%d-%d", time.Now().Unix()%100000, h.trialNo)
	h.cfg.S3.MakeBucket(h.cfg.TB, bucket, true)
	h.proxy.Set(faultproxy.Faults{})
	h.proxy.ResetLog()
	req0, inj0 := h.proxy.Requests.Load(), h.proxy.Injected.Load()

	expr := filepath.Join(dir, "fleet.nix")
	if err := os.WriteFile(expr, []byte(fleetExpr(opts, testenv.Nonce())), 0o644); err != nil {
		return res, fmt.Errorf("%w: %w", ErrTrial, err)
	}

	// Each builder's queue starts with the big path, as if every builder
	// had fetched the same large toolchain: the worst case for duplicate
	// uploads (four daemons find it missing at the same moment).
	queues := make([]string, opts.Daemons)
	daemons := make([]*daemon, opts.Daemons)
	defer func() {
		for _, d := range daemons {
			if d != nil {
				d.kill()
			}
		}
	}()
	for k := range queues {
		queues[k] = filepath.Join(dir, fmt.Sprintf("queue%d", k))
		if err := h.enqueue(queues[k], h.big); err != nil {
			return res, fmt.Errorf("%w: %w", ErrTrial, err)
		}
	}
	for k := range daemons {
		d, err := h.startDaemon(queues[k], bucket, false)
		if err != nil {
			return res, fmt.Errorf("%w: %w", ErrTrial, err)
		}
		daemons[k] = d
	}

	stop := make(chan struct{})
	var bg sync.WaitGroup
	var killErr error
	var struck atomic.Bool // the kill happened (or will not)
	if !opts.NoKill {
		bg.Go(func() { res.Killed, res.KilledDuring, killErr = h.killNode(opts, stop, &struck) })
	}
	var bursts atomic.Int64
	if !opts.NoSlowDown {
		bg.Go(func() { h.slowDownBursts(stop, &bursts) })
	}

	// The builders: each runs its rounds one after the other, all at once.
	tops := make([][]string, opts.Daemons)
	errs := make([]error, opts.Daemons)
	var builds sync.WaitGroup
	for k := range opts.Daemons {
		builds.Go(func() {
			for j := range opts.Rounds {
				out, err := h.buildAttr(ctx, expr, fmt.Sprintf("b%dr%d", k, j), queues[k])
				if err != nil {
					errs[k] = err
					return
				}
				tops[k] = append(tops[k], out...)
			}
		})
	}
	builds.Wait()
	// The kill comes while the daemons upload (it strikes at the big
	// path's first multipart part, sent as soon as they start); the node
	// comes back opts.Down later.
	for deadline := time.Now().Add(time.Minute); !opts.NoKill && !struck.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	bg.Wait()
	if err := errors.Join(append(errs, killErr)...); err != nil {
		return res, fmt.Errorf("%w: fleet: %w", ErrTrial, err)
	}
	if err := opts.Cluster.WaitHealthy(time.Minute); err != nil {
		return res, fmt.Errorf("%w: fleet: %w", ErrTrial, err)
	}
	h.proxy.Set(faultproxy.Faults{})

	// SIGTERM lets in-flight uploads finish; a last run of each daemon
	// with --exit-when-empty drains what is left.
	var drains sync.WaitGroup
	derrs := make([]error, opts.Daemons)
	for k, d := range daemons {
		drains.Go(func() {
			if derrs[k] = d.stop(); derrs[k] == nil {
				derrs[k] = h.drain(queues[k], bucket)
			}
		})
	}
	drains.Wait()
	for k, d := range daemons {
		for _, l := range strings.Split(d.log.String(), "\n") {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				h.cfg.Logf("daemon %d: %s", k, l)
			}
		}
	}
	daemons = nil
	if err := errors.Join(derrs...); err != nil {
		return res, fmt.Errorf("%w: fleet: %w", ErrTrial, err)
	}

	var want trialState
	if err := want.addWant([]string{h.big}); err != nil {
		return res, fmt.Errorf("%w: %w", ErrTrial, err)
	}
	for _, t := range tops {
		if err := want.addWant(t); err != nil {
			return res, fmt.Errorf("%w: %w", ErrTrial, err)
		}
	}
	h.proxy.WaitIdle(5 * time.Second)
	log := h.proxy.Log()
	logSlow(h.cfg.Logf, log, start, 10*time.Second)
	res.Requests = int(h.proxy.Requests.Load() - req0)
	res.SlowDowns = int(h.proxy.Injected.Load() - inj0)
	up := AnalyzeLog(log, bucket)
	res.Stored, res.Failed, res.Retried, res.Needless = up.Stored, up.Failed, up.Needed, len(up.Needless)+len(up.Raced)
	if len(up.Needless)+len(up.Raced) > 0 {
		h.cfg.Logf("fleet: stored again without a failure: %v; of them raced (seen missing before stored): %v", append(up.Needless, up.Raced...), up.Raced)
	}
	var narLog []faultproxy.Request
	for _, r := range log {
		if strings.HasPrefix(r.Path, "/"+bucket+"/nar/") {
			narLog = append(narLog, r)
		}
	}
	res.Parts, res.PartsResent = countParts(narLog)
	nu := AnalyzeLog(narLog, bucket)
	res.NARs, res.NARStores, res.NARRetried = nu.Keys, nu.Stored, nu.Needed
	res.NARDuplicates, res.NARRaced = len(nu.Needless)+len(nu.Raced), len(nu.Raced)

	read := opts.Cluster.S3(h.cfg.TB, opts.ReadNode)
	if err := waitReadable(ctx, read.Endpoint, bucket); err != nil {
		h.cfg.Logf("fleet: the cache is not readable anonymously through node %d: %v", opts.ReadNode, err)
	}
	mc := read.Client(h.cfg.TB)
	cr, err := check(ctx, h.cfg.TB, mc, read.Endpoint, bucket, h.keyPub, want.want)
	if err != nil {
		return res, fmt.Errorf("%w: fleet: %w", ErrTrial, err)
	}
	res.Paths, res.Lost, res.Broken = cr.Checked, cr.Lost, cr.Broken
	res.NARBytes, res.DupBytes = narBytes(ctx, h, read, bucket, append(nu.Needless, nu.Raced...))
	res.Duration = time.Since(start)
	h.cfg.Logf("fleet: %s", res)
	return res, nil
}

func (o FleetOptions) withDefaults() FleetOptions {
	if o.Daemons <= 0 {
		o.Daemons = 4
	}
	if o.Rounds <= 0 {
		o.Rounds = 2
	}
	if o.Shared <= 0 {
		o.Shared = 6
	}
	if o.Own <= 0 {
		o.Own = 3
	}
	if o.Blob <= 0 {
		o.Blob = 64 << 10
	}
	if o.Down <= 0 {
		o.Down = 2 * time.Second
	}
	return o
}

// String is the trial's one-line summary.
func (r FleetResult) String() string {
	return fmt.Sprintf("%d daemons, %d builds, %d paths, lost %d, broken %d; node %d killed during %q; %d SlowDown; %d requests; "+
		"%d stored, %d failed, %d retried, %d needless; NARs %d (%d B) stored %d times: %d after a failure, %d duplicates (%d B, %d raced); "+
		"%d parts, %d sent again; %v",
		r.Daemons, r.Builds, r.Paths, len(r.Lost), len(r.Broken), r.Killed, r.KilledDuring, r.SlowDowns, r.Requests,
		r.Stored, r.Failed, r.Retried, r.Needless, r.NARs, r.NARBytes, r.NARStores, r.NARRetried, r.NARDuplicates, r.DupBytes, r.NARRaced,
		r.Parts, r.PartsResent,
		r.Duration.Round(100*time.Millisecond))
}

// narBytes sums the sizes of the NAR files in bucket, and of the keys
// uploaded again without need.
// waitReadable waits until an anonymous GET of nix-cache-info through
// endpoint answers 200, as Nix's first request does, for at most a minute;
// it returns what the last answer was when it never does. A MinIO node may
// apply a new bucket policy late (Nix then gets 403 and calls the bucket
// "not a binary cache").
func waitReadable(ctx context.Context, endpoint, bucket string) error {
	url := endpoint + "/" + bucket + "/nix-cache-info"
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = resp.Status + ": " + string(body)
	}
	return fmt.Errorf("GET %s: %s", url, last)
}

// requestKind names a request by method and object kind, such as
// "HEAD narinfo" or "PUT nar part", for a breakdown of what a fleet asks.
func requestKind(r faultproxy.Request, bucket string) string {
	key := strings.TrimPrefix(r.Path, "/"+bucket+"/")
	kind := "other"
	switch {
	case key == "" || key == "/"+bucket:
		kind = "bucket"
	case strings.HasSuffix(key, ".narinfo"):
		kind = "narinfo"
	case strings.HasPrefix(key, "nar/"):
		kind = "nar"
	case strings.HasSuffix(key, ".ls"):
		kind = "ls"
	}
	switch q := r.Query; {
	case strings.Contains(q, "partNumber="):
		kind += " part"
	case strings.Contains(q, "uploads"):
		kind += " uploads"
	case strings.Contains(q, "uploadId="):
		kind += " upload"
	case q != "":
		kind += "?" + strings.SplitN(q, "=", 2)[0]
	}
	if r.Failed() {
		kind += " failed"
	}
	return r.Method + " " + kind
}

// countParts counts the multipart parts stored in log (PUTs with a
// partNumber answered 2xx) and those stored again for the same key and
// part number.
func countParts(log []faultproxy.Request) (parts, resent int) {
	seen := map[string]bool{}
	for _, r := range log {
		if r.Method != "PUT" || r.Failed() {
			continue
		}
		q, _ := url.ParseQuery(r.Query)
		n := q.Get("partNumber")
		if n == "" {
			continue
		}
		parts++
		if k := r.Path + "#" + n; seen[k] {
			resent++
		} else {
			seen[k] = true
		}
	}
	return parts, resent
}

var listNAR = minio.ListObjectsOptions{Prefix: "nar/", Recursive: true}

func narBytes(ctx context.Context, h *Harness, s3 *testenv.S3, bucket string, dups []string) (all, dup int64) {
	sizes := map[string]int64{}
	for obj := range s3.Client(h.cfg.TB).ListObjects(ctx, bucket, listNAR) {
		if obj.Err == nil {
			sizes[obj.Key] = obj.Size
			all += obj.Size
		}
	}
	for _, k := range dups {
		dup += sizes[k]
	}
	return all, dup
}

// killNode SIGKILLs one of opts.WriteNodes while a multipart part is being
// forwarded (mid-upload; after 30 requests if no part comes), sets struck,
// and restarts the node opts.Down later. If stop closes first, nothing is
// killed.
func (h *Harness) killNode(opts FleetOptions, stop chan struct{}, struck *atomic.Bool) (node int, during string, err error) {
	defer struck.Store(true)
	parts := make(chan faultproxy.Request, 1)
	h.proxy.OnForward(func(r faultproxy.Request) {
		if strings.Contains(r.Query, "partNumber=") {
			select {
			case parts <- r:
			default:
			}
		}
	})
	defer h.proxy.OnForward(nil)
	target := h.proxy.Requests.Load() + 30
	for during == "" {
		select {
		case r := <-parts:
			during = r.Method + " " + r.Path + "?" + r.Query
		case <-stop:
			return 0, "", nil
		case <-time.After(5 * time.Millisecond):
			if h.proxy.Requests.Load() >= target {
				during = "request " + fmt.Sprint(target)
			}
		}
	}
	node = opts.WriteNodes[rand.IntN(len(opts.WriteNodes))]
	opts.Cluster.Kill(node)
	struck.Store(true)
	h.cfg.Logf("fleet: node %d SIGKILLed during %s", node, during)
	time.Sleep(opts.Down)
	if err := opts.Cluster.Restart(node); err != nil {
		return node, during, err
	}
	h.cfg.Logf("fleet: node %d restarted", node)
	return node, during, nil
}

// slowDownBursts answers half of the requests with 503 SlowDown for 300 ms
// in every second until stop closes and at least one SlowDown was answered.
func (h *Harness) slowDownBursts(stop chan struct{}, n *atomic.Int64) {
	defer h.proxy.Set(faultproxy.Faults{})
	injected0 := h.proxy.Injected.Load()
	var stopped time.Time
	// wait waits d, and reports whether to stop: once stop is closed,
	// and a SlowDown was answered (when every daemon waited on a stalled
	// server during the bursts so far, the bursts go on while they drain,
	// for at most 2 minutes: MinIO has held CompleteMultipartUpload for up
	// to 96 s after a node was killed).
	wait := func(d time.Duration) bool {
		if stopped.IsZero() {
			select {
			case <-stop:
				stopped = time.Now()
			case <-time.After(d):
				return false
			}
		} else {
			time.Sleep(d)
		}
		return h.proxy.Injected.Load() > injected0 || time.Since(stopped) > 2*time.Minute
	}
	for {
		if wait(700 * time.Millisecond) {
			return
		}
		h.proxy.Set(faultproxy.Faults{SlowDownRate: 0.5})
		n.Add(1)
		if wait(300 * time.Millisecond) {
			return
		}
		h.proxy.Set(faultproxy.Faults{})
	}
}

// fleetExpr is a Nix expression with a shared chain s0..s(S-1) and, for
// every builder k and round j, an attribute bKrJ: a chain of Own
// derivations on top of the shared one. Path names end in their depth in
// the graph, so that Close deletes referrers first.
func fleetExpr(o FleetOptions, nonce string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `let
  nonce = %q;
  mk = name: deps: derivation {
    inherit name nonce;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ''
      set -e
      mkdir -p $out
      echo ${nonce} > $out/id
      ${builtins.concatStringsSep "\n" (map (d: "echo ${d} >> $out/deps") deps)}
      head -c %d /dev/urandom > $out/blob
    '' ];
  };
  s0 = mk "faults-fleet-s-0" [ ];
`, nonce, o.Blob)
	for i := 1; i < o.Shared; i++ {
		fmt.Fprintf(&b, "  s%d = mk \"faults-fleet-s-%d\" [ s%d ];\n", i, i, i-1)
	}
	b.WriteString("in {\n")
	for k := range o.Daemons {
		for j := range o.Rounds {
			fmt.Fprintf(&b, "  b%dr%d = let\n", k, j)
			prev := fmt.Sprintf("s%d", o.Shared-1)
			for i := range o.Own {
				fmt.Fprintf(&b, "    o%d = mk \"faults-fleet-b%dr%d-%d\" [ %s s0 ];\n", i, k, j, o.Shared+i, prev)
				prev = fmt.Sprintf("o%d", i)
			}
			fmt.Fprintf(&b, "  in %s;\n", prev)
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// buildAttr runs nix-build on attribute attr of expr with the post-build
// hook in queue mode on queueDir, and returns the outputs.
func (h *Harness) buildAttr(ctx context.Context, expr, attr, queueDir string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "nix-build", expr, "-A", attr, "--no-out-link", "--option", "substituters", "",
		"--option", "post-build-hook", h.cfg.Hook)
	cmd.Env = append(testenv.Environ("NIXCACHE_"), "NIXCACHE_CONFIG="+h.emptyConfig(), "NIXCACHE_QUEUE="+queueDir)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nix-build -A %s: %w\n%s", attr, err, se.String())
	}
	outs := strings.Fields(so.String())
	cl, err := closure(outs)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	for _, p := range cl {
		if strings.Contains(p, "-faults-fleet-") && !h.builtSet[p] {
			h.builtSet[p] = true
			h.built = append(h.built, p)
		}
	}
	h.mu.Unlock()
	return outs, nil
}

// DrainResult is what one Harness.FleetDrain did.
type DrainResult struct {
	// Paths is the number of distinct paths queued (and checked).
	Paths int
	// Duration is from the daemons' start until the last one exited.
	Duration time.Duration
	// Requests is the number of requests the daemons made, Refused those
	// the proxy refused (Faults: its SlowDown, 429 or limit answers).
	Requests, Refused int
	// MaxForwarding is the most requests the proxy forwarded at once.
	MaxForwarding int
	// NARs is the number of NAR files stored, NARDuplicates those stored
	// again without a failed request (daemons racing on one path).
	NARs, NARDuplicates int
	// Lost and Broken are what the checker found (must be empty).
	Lost, Broken []string
}

// FleetDrain measures a fleet's throughput: queues[k] is enqueued into
// daemon k's queue, then all daemons start at once with --exit-when-empty
// and push into a fresh public bucket through the proxy, which applies
// faults the whole time. When the last daemon has exited, the bucket is
// checked through readNode (real Nix verifies every queued path).
func (h *Harness) FleetDrain(ctx context.Context, cluster *testenv.MinIOCluster, readNode int, queues [][]string, faults faultproxy.Faults) (DrainResult, error) {
	var res DrainResult
	h.trialNo++
	dir := filepath.Join(h.cfg.WorkDir, fmt.Sprintf("drain-%d", h.trialNo))
	defer os.RemoveAll(dir)
	bucket := fmt.Sprintf("drain-%d-%d", time.Now().Unix()%100000, h.trialNo)
	h.cfg.S3.MakeBucket(h.cfg.TB, bucket, true)
	qdirs := make([]string, len(queues))
	seen := map[string]bool{}
	var all []string
	for k, paths := range queues {
		qdirs[k] = filepath.Join(dir, fmt.Sprintf("queue%d", k))
		if err := h.enqueue(qdirs[k], paths...); err != nil {
			return res, fmt.Errorf("%w: %w", ErrTrial, err)
		}
		for _, p := range paths {
			if !seen[p] {
				seen[p] = true
				all = append(all, p)
			}
		}
	}
	h.proxy.Set(faults)
	h.proxy.ResetLog()
	req0, inj0 := h.proxy.Requests.Load(), h.proxy.Injected.Load()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(qdirs))
	for k := range qdirs {
		wg.Go(func() { errs[k] = h.drain(qdirs[k], bucket) })
	}
	wg.Wait()
	res.Duration = time.Since(start)
	h.proxy.Set(faultproxy.Faults{})
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("%w: %w", ErrTrial, err)
	}
	h.proxy.WaitIdle(5 * time.Second)
	res.Requests = int(h.proxy.Requests.Load() - req0)
	res.Refused = int(h.proxy.Injected.Load() - inj0)
	var narLog []faultproxy.Request
	kinds := map[string]int{}
	var early, earlyLimited, limited int // early: the daemons' first 2 s (their probe)
	for _, r := range h.proxy.Log() {
		if strings.HasPrefix(r.Path, "/"+bucket+"/nar/") {
			narLog = append(narLog, r)
		}
		kinds[requestKind(r, bucket)]++
		isEarly := r.Start.Before(start.Add(2 * time.Second))
		if isEarly {
			early++
		}
		if r.Limited {
			limited++
			if isEarly {
				earlyLimited++
			}
		}
	}
	nu := AnalyzeLog(narLog, bucket)
	res.NARs, res.NARDuplicates = nu.Keys, len(nu.Needless)+len(nu.Raced)
	h.cfg.Logf("drain: %d paths in %v, %d requests: %v", len(all), res.Duration.Round(time.Millisecond), res.Requests, kinds)
	if limited > 0 {
		h.cfg.Logf("drain: %d refused by the limit, %d of %d in the first 2 s, %d of %d after", limited, earlyLimited, early, limited-earlyLimited, res.Requests-early)
	}
	read := cluster.S3(h.cfg.TB, readNode)
	if err := waitReadable(ctx, read.Endpoint, bucket); err != nil {
		h.cfg.Logf("drain: the cache is not readable anonymously through node %d: %v", readNode, err)
	}
	cr, err := check(ctx, h.cfg.TB, read.Client(h.cfg.TB), read.Endpoint, bucket, h.keyPub, all)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrTrial, err)
	}
	res.Paths, res.Lost, res.Broken = cr.Checked, cr.Lost, cr.Broken
	return res, nil
}

// logSlow logs the requests that took longer than d (when, from start, and
// how long), which say where a trial waited: on the server, or on itself.
func logSlow(logf func(string, ...any), log []faultproxy.Request, start time.Time, d time.Duration) {
	for _, r := range log {
		if took := r.End.Sub(r.Start); took > d {
			logf("fleet: slow request at %v for %v: %s %s?%.40s -> %d", r.Start.Sub(start).Round(100*time.Millisecond),
				took.Round(100*time.Millisecond), r.Method, r.Path, r.Query, r.Status)
		}
	}
}
