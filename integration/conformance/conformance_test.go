//go:build linux
// +build linux

// Package conformance runs containerd's snapshotter conformance suite
// (snapshots/testsuite) against oxkitd's Snapshots gRPC service: each test
// gets a fresh `oxkitd snapshotter` on its own root, reached through
// containerd's proxy snapshotter exactly as containerd itself would reach it.
package conformance

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/pkg/testutil"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

const (
	startTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
	// A unix socket path must fit sun_path: 108 bytes including the NUL.
	maxSocketPath = 107
)

func TestOxkitd(t *testing.T) {
	if os.Getenv("CI") == "true" && flag.Lookup("test.root").Value.String() != "true" {
		t.Fatal("CI=true: the suite must run as root with -test.root, not be skipped")
	}
	testutil.RequiresRoot(t)

	bin := os.Getenv("OXKITD_BIN")
	if bin == "" {
		t.Fatal("OXKITD_BIN is not set; point it at the oxkitd binary (run.sh does)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("OXKITD_BIN: %v; build it with `cargo build -p oxkit-cmd`", err)
	}

	// Like containerd's overlay tests, run the whole suite once per variant.
	for _, mode := range []string{"overlay", "native"} {
		mode := mode
		t.Run(mode, func(t *testing.T) {
			testsuite.SnapshotterSuite(t, "oxkit", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
				return startDaemon(ctx, bin, mode, root)
			})
		})
	}
}

// daemon is one oxkitd process serving the Snapshots API for one test's root.
type daemon struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once cmd.Wait has returned into waitErr
	waitErr error
}

// startDaemon starts oxkitd in the given --mode on root, with its socket and
// log beside root in the test's temp dir, and returns a proxy snapshotter
// connected to it. The cleanup stops the daemon and hands its log to the
// test's logger, which Go prints for a failing test (and every test under -v).
func startDaemon(ctx context.Context, bin, mode, root string) (snapshots.Snapshotter, func() error, error) {
	dir := filepath.Dir(root)
	sock := filepath.Join(dir, "oxkitd.sock")
	if len(sock) > maxSocketPath {
		return nil, nil, fmt.Errorf("socket path %s is over %d bytes; set TMPDIR to a shorter directory", sock, maxSocketPath)
	}
	logPath := filepath.Join(dir, "oxkitd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close() // the daemon holds its own descriptor

	args := []string{"snapshotter", "--root", root, "--address", sock, "--mode", mode}
	if level := os.Getenv("OXKITD_LOG_LEVEL"); level != "" {
		args = append(args, "--log-level", level)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "NO_COLOR=1") // the log is read as text, not on a terminal
	// Don't leave daemons (and their mounts) behind if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("failed to start %s: %w", bin, err)
	}
	d := &daemon{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() { d.waitErr = cmd.Wait(); close(d.exited) }()

	if err := d.waitForSocket(sock); err != nil {
		_ = d.stop()
		return nil, nil, fmt.Errorf("%w\n--- oxkitd log ---\n%s", err, d.log())
	}
	conn, err := grpc.Dial(dialer.DialAddress(sock),
		grpc.WithInsecure(), grpc.WithContextDialer(dialer.ContextDialer))
	if err != nil {
		_ = d.stop()
		return nil, nil, fmt.Errorf("failed to dial %s: %w", sock, err)
	}

	cleanup := func() error {
		conn.Close()
		err := d.stop()
		for _, line := range strings.Split(strings.TrimRight(d.log(), "\n"), "\n") {
			log.G(ctx).Info("oxkitd: " + line)
		}
		return err
	}
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "oxkit"), cleanup, nil
}

// waitForSocket returns once sock accepts a connection, or fails if the
// daemon exits or startTimeout passes first.
func (d *daemon) waitForSocket(sock string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-d.exited:
			return fmt.Errorf("oxkitd exited before serving %s: %v", sock, d.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("oxkitd did not accept connections on %s within %s: %v", sock, startTimeout, err)
		}
	}
}

// stop sends SIGTERM and waits, killing the daemon after stopTimeout. It
// reports a daemon that had already exited, had to be killed, or exited
// unsuccessfully.
func (d *daemon) stop() error {
	select {
	case <-d.exited:
		return fmt.Errorf("oxkitd exited before it was asked to stop: %v", exitStatus(d.waitErr))
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM) // fails only if it has just exited; Wait says how
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("oxkitd did not stop within %s of SIGTERM; killed it", stopTimeout)
	}
	if d.waitErr != nil {
		return fmt.Errorf("oxkitd failed on SIGTERM: %v", d.waitErr)
	}
	return nil
}

// log returns what the daemon wrote to stdout and stderr so far.
func (d *daemon) log() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", d.logPath, err)
	}
	return string(b)
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
