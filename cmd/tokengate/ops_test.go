package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given serial.
func writeCert(t *testing.T, dir string, serial int64) (certFile, keyFile string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "tokengate-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: nil, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// Write to temp files and rename, as a certificate manager would.
	for _, f := range []struct {
		path string
		data []byte
	}{
		{certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})},
	} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

func servedSerial(t *testing.T, c *http.Client, url string) int64 {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
}

func TestTLS_CertificateReloadedOnSIGHUPWithoutDroppingConnections(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, 1)
	c := baseConfig(realm.Issuer(), t.TempDir())
	c.TLS = &config.TLS{CertFile: certFile, KeyFile: keyFile}
	g := startGateway(t, c)
	url := "https://" + strings.TrimPrefix(g.Base, "http://") + "/healthz"
	tr := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // self-signed test certificate
		}}
	}
	kept := tr()
	if s := servedSerial(t, kept, url); s != 1 {
		t.Fatalf("serial %d, want 1", s)
	}
	writeCert(t, dir, 2)
	if err := g.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for servedSerial(t, tr(), url) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not served after SIGHUP")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The keep-alive connection opened before the reload still works.
	if s := servedSerial(t, kept, url); s != 1 {
		t.Errorf("the open connection was renegotiated or dropped: serial %d", s)
	}
	// A broken pair is refused and the current certificate kept.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = g.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if s := servedSerial(t, tr(), url); s != 2 {
		t.Errorf("after a bad reload: serial %d, want 2", s)
	}
	if !strings.Contains(g.Output(), "reload failed") {
		t.Error("a failed reload was not logged")
	}
	// File change without a signal is picked up too.
	writeCert(t, dir, 3)
	deadline = time.Now().Add(15 * time.Second)
	for servedSerial(t, tr(), url) != 3 {
		if time.Now().After(deadline) {
			t.Fatal("a changed certificate file was not picked up")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestMetrics_ServedOnAdminListener(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	g := startGateway(t, baseConfig(realm.Issuer(), t.TempDir()))
	ex := g.mustExchange(realm.AccessToken(kctest.Token{SID: "sid-metrics"}))
	g.mustRenew(ex.RefreshToken, "renewal")
	if r := g.logout(realm.LogoutToken("", "sid-metrics")); r.Status != http.StatusOK {
		t.Fatalf("logout: %v", r)
	}
	resp, err := http.Get(g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tokengate_exchanges_total{reason="",result="ok"} 1`,
		`tokengate_renewals_total{reason="",result="ok"} 1`,
		`tokengate_introspection_duration_seconds_count{outcome="active"} 1`,
		`tokengate_store_commit_duration_seconds_count{op="update_keys"}`,
		`tokengate_store_commit_duration_seconds_count{op="record_revocation"} 1`,
		`tokengate_signing_key_age_seconds`,
		`tokengate_http_requests_total{code="200",route="/token"} 2`,
		`tokengate_revocation_records{kind="sessions"}`, // refreshed periodically
		`tokengate_cache_entries{cache="recheck_schedule"} 1`, `tokengate_cache_entries{cache="refresh_tokens"}`,
		`tokengate_cache_entries{cache="introspection"}`, `tokengate_cache_evictions_total{cache="introspection"} 0`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if resp, err := http.Get(g.Base + "/metrics"); err == nil && resp.StatusCode == 200 {
		t.Error("/metrics must not be on the public listener")
	}
}
