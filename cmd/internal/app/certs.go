package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// certReloader serves the newest certificate from cert/key files: it reloads them when their
// modification time changes (checked every few seconds) or on SIGHUP. Connections already open
// keep their certificate; new handshakes get the new one. A bad new pair is logged and the old
// one kept.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	stamp             string
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	r.cert.Store(&c)
	r.stamp = r.modStamp()
	return nil
}

func (r *certReloader) modStamp() string {
	var s string
	for _, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s += fi.ModTime().String() + fmt.Sprint(fi.Size())
		}
	}
	return s
}

// config returns a TLS configuration serving the current certificate.
func (r *certReloader) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
}

// watch reloads on SIGHUP or file change until ctx ends.
func (r *certReloader) watch(ctx context.Context, every time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload("SIGHUP")
		case <-t.C:
			if r.modStamp() != r.stamp {
				r.reload("files changed")
			}
		}
	}
}

func (r *certReloader) reload(why string) {
	if err := r.load(); err != nil {
		r.log.Error("TLS certificate reload failed; keeping the current one", "why", why, "error", err.Error())
		return
	}
	r.log.Info("TLS certificate reloaded", "why", why)
}
