//go:build unix

package loopback

import (
	"bufio"
	"net"
	"os"
	"os/exec"
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
