package chaos

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// proxy is a TCP proxy between one tokengate replica and one etcd member that the suite can
// cut (a partition: bytes stop flowing both ways and new connections hang, as when packets are
// dropped — nothing is reset) or slow (added latency per chunk, both ways). Heal lets the held
// bytes flow again, as TCP retransmission would after a partition ends.
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	cut     bool
	latency time.Duration
	healed  chan struct{} // closed when a cut ends; replaced at each cut
	conns   map[net.Conn]struct{}
	closed  bool
}

// newProxy listens on a free loopback port and forwards every connection to target.
func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, healed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.healed)
	go p.serve()
	return p, nil
}

// URL is the proxy's address as an etcd client URL.
func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Cut starts a partition.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.cut = true
		p.healed = make(chan struct{})
	}
}

// Heal ends a partition.
func (p *proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		p.cut = false
		close(p.healed)
	}
}

// SetLatency delays every chunk forwarded in either direction by d (0: none).
func (p *proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// gate blocks while the proxy is cut (or until it closes) and returns the latency to add.
func (p *proxy) gate() (time.Duration, bool) {
	for {
		p.mu.Lock()
		cut, healed, lat, closed := p.cut, p.healed, p.latency, p.closed
		p.mu.Unlock()
		if closed {
			return 0, false
		}
		if !cut {
			return lat, true
		}
		select {
		case <-healed:
		case <-time.After(100 * time.Millisecond): // re-check closed
		}
	}
}

// Close stops listening and closes every connection.
func (p *proxy) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	_ = p.ln.Close()
	for c := range conns {
		_ = c.Close()
	}
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go p.handle(c)
	}
}

func (p *proxy) handle(in net.Conn) {
	if !p.track(in) {
		_ = in.Close()
		return
	}
	defer p.untrack(in)
	// A connection opened during a partition hangs until it heals, like a SYN that gets no answer.
	if _, ok := p.gate(); !ok {
		return
	}
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(out) {
		_ = out.Close()
		return
	}
	defer p.untrack(out)
	done := make(chan struct{}, 2)
	go func() { p.pipe(out, in); done <- struct{}{} }()
	go func() { p.pipe(in, out); done <- struct{}{} }()
	<-done // one side ended: close both (the deferred untracks)
}

// pipe copies src to dst chunk by chunk, holding each chunk while the proxy is cut.
func (p *proxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			lat, ok := p.gate()
			if !ok {
				return
			}
			if lat > 0 {
				time.Sleep(lat)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
