//go:build unix

package loopback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Ports are picked in [lowestPort, the kernel's first ephemeral port).
const lowestPort = 10000

var (
	reservedMu sync.Mutex
	reserved   []*os.File // the held locks, kept from the finalizer that would close them; exiting releases them
)

// Port returns a TCP port on 127.0.0.1 that is free now and reserved for this process until
// it exits, for a process it will start that must be told its port in advance (Keycloak, etcd,
// a tokengate whose URL other processes are configured with).
//
// A port the kernel hands out for 127.0.0.1:0 can be taken by any outgoing connection's local
// end between the moment it is picked and the moment the child binds it (tens of seconds when
// Keycloak starts first); go test runs packages in parallel, so that happened. Port therefore
// picks outside the kernel's ephemeral range (which no outgoing connection and no :0 listener
// uses) and reserves the port with a lock file that every tokengate process picking ports
// honours, so two test packages never pick the same one. Where the ephemeral range is unknown
// or leaves too little room below it, it falls back to a port the kernel picks.
func Port() (int, error) {
	lo := ephemeralLow()
	if lo-lowestPort < 1000 {
		return kernelPort()
	}
	dir := lockDir()
	if !privateDir(dir) {
		return kernelPort()
	}
	for range 200 {
		p := lowestPort + rand.IntN(lo-lowestPort)
		f, err := reserve(dir, p)
		if err != nil {
			return 0, err
		}
		if f == nil {
			continue
		}
		reservedMu.Lock()
		reserved = append(reserved, f)
		reservedMu.Unlock()
		return p, nil
	}
	return kernelPort()
}

// lockDir holds one lock file per port (the files stay; the locks go with their holders).
func lockDir() string {
	return filepath.Join(os.TempDir(), "tokengate-ports-"+strconv.Itoa(os.Getuid()))
}

// privateDir makes dir (mode 0700) unless it exists, and reports whether it is a directory of
// this user's that nobody else may write or enter: the temp folder is shared, and a folder
// someone else made (or a symlink) could hold links that make the lock files land elsewhere.
func privateDir(dir string) bool {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return false
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

// reserve takes the lock file of port p in dir and checks that p is free on 127.0.0.1. It
// returns the open lock (held until closed), or nil when another holder has the lock or
// something that does not take part listens on p.
func reserve(dir string, p int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("loopback: reserve port %d: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil // another process (or this one) holds it
		}
		return nil, fmt.Errorf("loopback: reserve port %d: %w", p, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		_ = f.Close()
		return nil, nil
	}
	_ = l.Close()
	return f, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, read from Linux's
// /proc; 0 where it cannot be read (another unix), and Port then takes the kernel's pick.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return lo
}
