package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MinIOCluster is a distributed MinIO for one test: 4 server processes with
// 2 drives each, one erasure set (4 data + 4 parity shards: any one node
// may be lost and the cluster still reads and writes).
//
// MinIO refuses loopback addresses for a distributed set on these machines,
// so each node runs in a network namespace of its own (n1..n4, address
// 10.77.0.i:9000 on eth0, a veth whose peer h<i> sits on a bridge in a
// "hub" namespace, 10.77.0.254). The namespaces are the test's own, named
// after the test process so that test binaries running at once do not
// collide; the cluster's traffic never leaves them, and the host's own
// network is not used. Processes reach a node through S3 or Forward, a
// loopback forwarder in the test process whose outgoing connections are
// made inside the hub namespace; a command can also run inside it with
// `ip netns exec HUB CMD` (Hub).
type MinIOCluster struct {
	AccessKey, SecretKey string

	bin     string
	dataDir string
	prefix  string // of the namespace names
	hubFD   int    // open /run/netns/<hub>, for Dial
	client  *http.Client

	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *Buffer
}

// ClusterNodes is the number of MinIO processes in a MinIOCluster.
const ClusterNodes = 4

var clusterSeq atomic.Int64

// StartMinIOCluster sets up the namespaces, starts the 4 nodes, and waits
// until /minio/health/cluster answers 200 (write quorum). When the test
// ends, the nodes are killed and the namespaces deleted, whatever happened.
// It needs root, the ip program and the MinIO binary: without them it skips
// the test, or fails it under CI=true. Clusters take turns on a machine
// (test binaries of several packages run at once under go test ./...): a
// second one waits until the first one's test has ended, since 8 MinIO
// processes on 2 cores made a restarted node miss its minute to rejoin.
func StartMinIOCluster(t TB) *MinIOCluster {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	bin := requireMinIO(t)
	takeClusterTurn(t)
	sweepNamespaces()
	c := &MinIOCluster{
		AccessKey: "nixcacheaccess",
		SecretKey: "nixcachesecret123",
		bin:       bin,
		dataDir:   t.TempDir(),
		prefix:    fmt.Sprintf("nxc%d-%d-", os.Getpid(), clusterSeq.Add(1)),
		hubFD:     -1,
		nodes:     make([]*clusterNode, ClusterNodes+1),
	}
	t.Cleanup(c.close)
	if err := c.setup(); err != nil {
		t.Fatalf("minio cluster: %v", err)
	}
	tr := &http.Transport{DialContext: c.Dial, MaxIdleConnsPerHost: 4}
	c.client = &http.Client{Transport: tr, Timeout: 2 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	for i := 1; i <= ClusterNodes; i++ {
		if _, err := c.start(i); err != nil {
			t.Fatalf("minio cluster: %v", err)
		}
	}
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Fatalf("minio cluster: %v", err)
	}
	return c
}

// takeClusterTurn waits for the machine's cluster lock (an flock on a file
// in the temporary directory, released when the test ends or its process
// dies).
func takeClusterTurn(t TB) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "nixcache-minio-cluster.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("minio cluster: lock: %v", err)
	}
	start := time.Now()
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		t.Fatalf("minio cluster: lock %s: %v", f.Name(), err)
	}
	if d := time.Since(start); d > time.Second {
		t.Logf("minio cluster: waited %v for another test's cluster", d.Round(time.Second))
	}
	t.Cleanup(func() { f.Close() }) // runs after the cluster's own cleanup
}

// Hub is the name of the hub namespace, for `ip netns exec HUB CMD`: a
// command run there reaches the nodes at Addr(i).
func (c *MinIOCluster) Hub() string { return c.prefix + "hub" }

func (c *MinIOCluster) nodeNS(i int) string { return c.prefix + "n" + strconv.Itoa(i) }

// Addr is node i's address (1 <= i <= ClusterNodes) inside the hub
// namespace: "10.77.0.i:9000".
func (c *MinIOCluster) Addr(i int) string { return fmt.Sprintf("10.77.0.%d:9000", i) }

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setup makes the namespaces, the bridge and the veth pairs (the recipe of
// notes/test-rig.md).
func (c *MinIOCluster) setup() error {
	hub := c.Hub()
	steps := [][]string{
		{"netns", "add", hub},
		{"-n", hub, "link", "set", "lo", "up"},
		{"-n", hub, "link", "add", "br0", "type", "bridge"},
		{"-n", hub, "addr", "add", "10.77.0.254/24", "dev", "br0"},
		{"-n", hub, "link", "set", "br0", "up"},
	}
	for i := 1; i <= ClusterNodes; i++ {
		ns, h := c.nodeNS(i), "h"+strconv.Itoa(i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", h, "netns", hub, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", hub, "link", "set", h, "master", "br0"},
			[]string{"-n", hub, "link", "set", h, "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "addr", "add", fmt.Sprintf("10.77.0.%d/24", i), "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	fd, err := unix.Open("/run/netns/"+hub, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open hub namespace: %w", err)
	}
	c.hubFD = fd
	return nil
}

// close kills the nodes and deletes the namespaces.
func (c *MinIOCluster) close() {
	for i := 1; i <= ClusterNodes; i++ {
		c.Kill(i)
	}
	if c.hubFD >= 0 {
		unix.Close(c.hubFD)
		c.hubFD = -1
	}
	for i := 1; i <= ClusterNodes; i++ {
		_ = ipCmd("netns", "del", c.nodeNS(i))
	}
	_ = ipCmd("netns", "del", c.Hub())
}

// sweepNamespaces deletes the namespaces left by test processes that died
// before their cleanup ran (killed by go test's timeout, say), with any
// process still inside them.
func sweepNamespaces() {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "nxc")
		pid, _, ok2 := strings.Cut(rest, "-")
		if !ok || !ok2 {
			continue
		}
		if n, err := strconv.Atoi(pid); err != nil || n == os.Getpid() {
			continue
		} else if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // still running
		}
		if out, err := exec.Command("ip", "netns", "pids", e.Name()).Output(); err == nil {
			for _, p := range strings.Fields(string(out)) {
				if n, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
		_ = ipCmd("netns", "del", e.Name())
	}
}

// Kill SIGKILLs node i and waits until it is gone (no-op if it is not
// running).
func (c *MinIOCluster) Kill(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// Restart starts node i again (or for the first time) with its drives as
// they are, and waits until the node itself answers /minio/health/cluster
// with 200 (within 2 minutes: a node that rejoins a busy cluster may take
// more than one): it has rejoined and serves requests (it may still be healing
// what was written while it was down).
func (c *MinIOCluster) Restart(i int) error {
	n, err := c.start(i)
	if err != nil || n == nil {
		return err
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-n.done:
			return fmt.Errorf("minio node %d exited: %s", i, tail(n.log.String()))
		default:
		}
		if err = healthy(c.client, "http://"+c.Addr(i)+"/minio/health/cluster"); err == nil {
			return nil
		}
	}
	return fmt.Errorf("minio node %d did not answer: %w; its output:\n%s", i, err, tail(n.log.String()))
}

// start starts node i unless it runs (then it returns nil, nil).
func (c *MinIOCluster) start(i int) (*clusterNode, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] != nil {
		return nil, nil
	}
	args := []string{"netns", "exec", c.nodeNS(i), c.bin, "server", "--address", c.Addr(i), "--quiet"}
	for j := 1; j <= ClusterNodes; j++ {
		for d := 1; d <= 2; d++ {
			dir := filepath.Join(c.dataDir, fmt.Sprintf("n%d", j), fmt.Sprintf("d%d", d))
			if j == i {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return nil, err
				}
			}
			args = append(args, fmt.Sprintf("http://10.77.0.%d:9000%s", j, dir))
		}
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), minioEnv(c.AccessKey, c.SecretKey)...)
	n := &clusterNode{cmd: cmd, done: make(chan struct{}), log: &Buffer{}}
	cmd.Stdout, cmd.Stderr = n.log, n.log
	// If the test binary dies without its cleanup (a timeout), the node dies too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start minio node %d: %w", i, err)
	}
	go func() { _ = cmd.Wait(); close(n.done) }()
	c.nodes[i] = n
	return n, nil
}

// tail returns the last lines of a process's output.
func tail(s string) string {
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// Running reports whether node i runs.
func (c *MinIOCluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i] != nil
}

// WaitHealthy waits until a running node answers /minio/health/cluster with
// 200: the cluster has write quorum.
func (c *MinIOCluster) WaitHealthy(timeout time.Duration) error {
	var err error = errors.New("no node runs")
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for i := 1; i <= ClusterNodes; i++ {
			if !c.Running(i) {
				continue
			}
			if err = healthy(c.client, "http://"+c.Addr(i)+"/minio/health/cluster"); err == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("cluster not healthy within %v: %w", timeout, err)
}

// Dial connects to addr from inside the hub namespace: the socket is made
// by a thread that has entered the namespace, and it stays there. It fits
// http.Transport.DialContext.
func (c *MinIOCluster) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("testenv: %w", err)}
			return
		}
		defer unix.Close(self)
		if err := unix.Setns(c.hubFD, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("testenv: enter hub namespace: %w", err)}
			return
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if unix.Setns(self, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// Forward starts a TCP forwarder on a free loopback port of the test
// process and returns its address, "127.0.0.1:PORT": each connection goes
// to the next of nodes (round robin; a node that refuses is skipped, as a
// load balancer would), so that processes outside the namespaces (daemons,
// Nix) reach the cluster over loopback. It stops when the test ends.
func (c *MinIOCluster) Forward(t TB, nodes ...int) string {
	t.Helper()
	if len(nodes) == 0 {
		t.Fatalf("Forward: no node")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		next  atomic.Uint32
	)
	track := func(cs ...net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false
		}
		for _, x := range cs {
			conns[x] = true
		}
		return true
	}
	untrack := func(cs ...net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		for _, x := range cs {
			delete(conns, x)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer down.Close()
				start := int(next.Add(1))
				var up net.Conn
				for k := range nodes {
					i := nodes[(start+k)%len(nodes)]
					if up, err = c.Dial(ctx, "tcp", c.Addr(i)); err == nil {
						break
					}
				}
				if up == nil {
					return
				}
				defer up.Close()
				if !track(down, up) {
					return
				}
				defer untrack(down, up)
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(up, down)
					up.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				_, _ = io.Copy(down, up)
				down.(*net.TCPConn).CloseWrite()
				<-done
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		mu.Lock()
		for x := range conns {
			x.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// S3 returns the cluster as an S3 server on loopback (a Forward over
// nodes), with the cluster's credentials: its Client, MakeBucket, URL and
// Env work as for versitygw. Its Start and Stop do nothing: Kill and
// Restart act on the nodes.
func (c *MinIOCluster) S3(t TB, nodes ...int) *S3 {
	t.Helper()
	host := c.Forward(t, nodes...)
	return &S3{Endpoint: "http://" + host, Host: host, AccessKey: c.AccessKey, SecretKey: c.SecretKey, DataDir: c.dataDir}
}

// Log returns node i's output so far (for a failing test's message).
func (c *MinIOCluster) Log(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] == nil {
		return ""
	}
	return tail(c.nodes[i].log.String())
}
