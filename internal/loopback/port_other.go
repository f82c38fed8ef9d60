//go:build !unix

package loopback

// Port returns a TCP port on 127.0.0.1 that was free a moment ago, picked by the kernel (the
// reservation of the unix build needs flock).
func Port() (int, error) { return kernelPort() }
