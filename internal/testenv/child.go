package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// StartSelf starts this test binary again as a helper child with env added
// to its environment (a TestMain that sees its variable runs the child's
// job instead of the tests), waits until the child prints the line ready on
// its standard output, and returns the running child and a pipe to its
// standard input. The child is killed at the end of the test; tests kill
// it earlier to leave work half done, as a crash would.
func StartSelf(t TB, ready string, env ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var stderr Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("child: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != ready {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q (%v), want %q; stderr:\n%s", line, err, ready, stderr.String())
	}
	return cmd, stdin
}

// Announce returns a reader that prints line on standard output when it is
// first read and then ends: put in an io.MultiReader after the data a child
// must have consumed, it tells the parent (StartSelf) how far the child got.
func Announce(line string) io.Reader { return announce(line) }

type announce string

func (a announce) Read([]byte) (int, error) {
	fmt.Println(string(a))
	return 0, io.EOF
}
