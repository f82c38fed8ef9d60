//go:build unix

package loopback

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Ports come from below the ephemeral range, are free, and are never handed out twice while
// reserved.
func TestPort_BelowTheEphemeralRangeAndNeverTwice(t *testing.T) {
	lo := ephemeralLow()
	if lo-lowestPort < 1000 {
		t.Skipf("ephemeral range starts at %d: Port falls back to the kernel's pick here", lo)
	}
	seen := map[int]bool{}
	for range 50 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p < lowestPort || p >= lo {
			t.Fatalf("port %d outside [%d, %d)", p, lowestPort, lo)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}

// A port reserved by another process is not reserved again; once that process exits, it is.
// A port something else listens on is not reserved.
func TestReserve_HonoursAnotherProcessAndListeners(t *testing.T) {
	if os.Getenv("LOOPBACK_HOLD_PORT") == "1" {
		p, err := Port()
		if err != nil {
			os.Exit(2)
		}
		os.Stdout.WriteString(strconv.Itoa(p) + "\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // hold until the parent says
		os.Exit(0)
	}
	if lo := ephemeralLow(); lo-lowestPort < 1000 {
		t.Skipf("ephemeral range starts at %d: Port falls back to the kernel's pick here", lo)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestReserve_HonoursAnotherProcessAndListeners$")
	child.Env = append(os.Environ(), "LOOPBACK_HOLD_PORT=1")
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper process: %v", err)
	}
	held, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper process printed %q", line)
	}
	if f, err := reserve(lockDir(), held); err != nil || f != nil {
		t.Fatalf("port %d reserved by another process was reserved again (%v)", held, err)
	}
	stdin.Close()
	if err := child.Wait(); err != nil {
		t.Fatal(err)
	}
	f, err := reserve(lockDir(), held)
	if err != nil || f == nil {
		t.Fatalf("port %d not reservable once its holder exited (%v)", held, err)
	}
	f.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	if f, err := reserve(lockDir(), busy); err != nil || f != nil {
		t.Fatalf("port %d, on which something listens, was reserved (%v)", busy, err)
	}
}

// The lock folder lives in the shared temp folder: one that is not this user's private folder
// (open to others, or a symlink someone planted) is not used; Port takes the kernel's pick.
func TestPort_LockFolderNotPrivateIsNotUsed(t *testing.T) {
	if lo := ephemeralLow(); lo-lowestPort < 1000 {
		t.Skipf("ephemeral range starts at %d: Port falls back to the kernel's pick here", lo)
	}
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, dir string)
	}{
		{"open to others", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}},
		{"a symlink", func(t *testing.T, dir string) {
			if err := os.Symlink(t.TempDir(), dir); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			dir := lockDir()
			tc.plant(t, dir)
			p, err := Port()
			if err != nil {
				t.Fatal(err)
			}
			if p >= lowestPort && p < ephemeralLow() {
				t.Fatalf("port %d picked below the ephemeral range, through lock folder %s", p, dir)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("lock files written in %s: %d", dir, len(entries))
			}
		})
	}
	// A private folder is used.
	t.Setenv("TMPDIR", t.TempDir())
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(lockDir(), strconv.Itoa(p))); err != nil {
		t.Fatalf("no lock file for port %d in the private folder: %v", p, err)
	}
}
