package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/proctest"
)

// testCA issues certificates for the mTLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: k, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for a server (127.0.0.1) or a client.
func (ca *testCA) issue(t *testing.T, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestAdminMTLS_RequiresAClientCertificateFromTheConfiguredCA(t *testing.T) {
	t.Parallel()
	realm := kctest.New(t)
	dir := t.TempDir()
	ca, rogue := newTestCA(t, "ops-ca"), newTestCA(t, "rogue-ca")
	srvCert, srvKey := ca.issue(t, true)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := withAdmin(realm.Issuer(), t.TempDir())
	c.Admin.TLS = &config.TLS{CertFile: write("admin.crt", srvCert), KeyFile: write("admin.key", srvKey),
		ClientCAFile: write("ca.crt", ca.pem)}
	// The harness waits for /readyz over plain HTTP, which an mTLS admin listener refuses: it
	// only starts the process, and the test polls with a client certificate.
	p := proctest.StartT(t, c, proctest.Options{Bin: binPath, NoWait: true})
	admin := strings.TrimPrefix(p.Admin, "http://")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	client := func(certPEM, keyPEM []byte) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	good := client(ca.issue(t, false))
	url := "https://" + admin + "/admin/keys"
	deadline := time.Now().Add(proctest.DefaultReadyTimeout)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+cliAdminToken)
		resp, err := good.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("with a good certificate and token: %d", resp.StatusCode)
			}
			break
		}
		if time.Now().After(deadline) || p.Exited() {
			t.Fatalf("admin listener never answered over mTLS: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, c := range map[string]*http.Client{
		"no client certificate":     client(nil, nil),
		"certificate of another CA": client(rogue.issue(t, false)),
	} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+cliAdminToken)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s: answered %d, want a refused handshake", name, resp.StatusCode)
		}
	}
	if resp, err := http.Get("http://" + admin + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("the admin listener answered plain HTTP")
	}
	if strings.Contains(p.Output(), cliAdminToken) {
		t.Error("the admin token reached the logs")
	}
}
