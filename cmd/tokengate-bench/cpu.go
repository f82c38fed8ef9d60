package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// pinSelf restricts every thread of this process to cpus (threads created later inherit it), so
// the load generator never competes with the gateway for the gateway's core. Processes started
// before the call (Keycloak) keep their own affinity.
func pinSelf(cpus []int) error {
	var mask [16]uint64
	for _, c := range cpus {
		mask[c/64] |= 1 << (c % 64)
	}
	for range 2 { // a second pass catches threads started during the first
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid),
				uintptr(len(mask)*8), uintptr(unsafe.Pointer(&mask[0])))
			if errno != 0 && errno != syscall.ESRCH {
				return fmt.Errorf("sched_setaffinity(%d): %w", tid, errno)
			}
		}
	}
	return nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux for every arch Go supports).
const clockTicks = 100

// cpuSeconds is the user+system CPU time a process has used so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may contain spaces
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64) // field 14 (utime), counting from state = field 3
	st, err2 := strconv.ParseFloat(f[12], 64) // field 15 (stime)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return (ut + st) / clockTicks, nil
}

// loadOnServer runs load (no rate limit) and reads the server process pid's CPU time around it:
// busy is the share of one core the server used, perCPU the requests per server CPU-second (0
// when it used none).
func loadOnServer(ctx context.Context, pid int, name string, conc int, dur time.Duration, fn func(ctx context.Context, worker int) error) (d Dist, busy, perCPU float64, err error) {
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return d, 0, 0, err
	}
	if d, err = load(ctx, name, conc, dur, 0, fn); err != nil {
		return d, 0, 0, err
	}
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return d, 0, 0, err
	}
	if used := cpu1 - cpu0; used > 0 {
		busy, perCPU = used/d.Seconds, float64(d.N)/used
	}
	return d, busy, perCPU, nil
}
