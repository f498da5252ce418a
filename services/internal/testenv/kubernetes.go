package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// KubeBinary returns the path of a binary built by `make kubernetes`
// (kube-apiserver, kubectl) in $BIN_DIR, or in the repository's bin/ when
// BIN_DIR is unset. A missing binary stops t (Missing: a failure in CI).
func KubeBinary(t testing.TB, name string) string {
	t.Helper()
	return Built(t, name, "kubernetes")
}

// Built returns the path of a program the Makefile builds into $BIN_DIR
// (or the repository's bin/ when BIN_DIR is unset) with `make target`. A
// missing program stops t (Missing: a failure in CI).
func Built(t testing.TB, name, target string) string {
	t.Helper()
	dir := os.Getenv("BIN_DIR")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "bin")
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%s (make %s builds it): %v", path, target, err)
	}
	return path
}

// Kubernetes is a private Kubernetes control plane for tests: Debian's etcd
// and a kube-apiserver built from the tools module, both on free loopback
// ports, with their data in a temporary directory. There is no
// controller-manager, scheduler or kubelet: objects are stored and
// validated (schemas, admission, Pod Security) but nothing runs them.
//
// The API server authenticates one bearer token (--token-auth-file), whose
// user is in system:masters, and runs the PodSecurity admission plugin.
type Kubernetes struct {
	// Server is the API server's URL, https://127.0.0.1:<port>.
	Server string
	// Kubeconfig is a kubeconfig file for Server and the token.
	Kubeconfig string

	t       testing.TB
	dir     string
	kubectl string
	calls   int
	exited  map[string]chan struct{} // closed when that server's process ends
}

// StartKubernetes starts etcd and kube-apiserver for t and waits until the
// API server is ready; both are stopped (by pid) when t ends. etcd or the
// binaries missing: Missing.
func StartKubernetes(t testing.TB) *Kubernetes {
	t.Helper()
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		Missing(t, "etcd (Debian package etcd-server): %v", err)
	}
	apiserver := KubeBinary(t, "kube-apiserver")
	k := &Kubernetes{t: t, dir: t.TempDir(), kubectl: KubeBinary(t, "kubectl"), exited: map[string]chan struct{}{}}

	ports := NewPorts(t)
	clientURL := "http://" + ports.Addr()
	peerURL := "http://" + ports.Addr()
	secure := ports.Addr()
	ports.Release()

	k.start("etcd", etcd,
		"--name", "carteiro-test",
		"--data-dir", filepath.Join(k.dir, "etcd"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "carteiro-test="+peerURL,
		"--logger", "zap", "--log-level", "warn",
	)
	k.waitFor("etcd", http.DefaultClient, clientURL+"/health", "")

	caPEM := k.writeServingCert()
	token := randomHex(t, 24)
	k.write("tokens.csv", token+`,carteiro-test,carteiro-test,"system:masters"`+"\n")
	k.write("sa.key", string(pemKey(t)))
	_, port, _ := net.SplitHostPort(secure)
	k.start("kube-apiserver", apiserver,
		"--etcd-servers", clientURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", port,
		"--tls-cert-file", filepath.Join(k.dir, "apiserver.crt"),
		"--tls-private-key-file", filepath.Join(k.dir, "apiserver.key"),
		"--cert-dir", filepath.Join(k.dir, "certs"),
		"--token-auth-file", filepath.Join(k.dir, "tokens.csv"),
		"--anonymous-auth=false",
		"--authorization-mode", "RBAC",
		"--enable-admission-plugins", "PodSecurity",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(k.dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(k.dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/16",
		// No kubernetes Service endpoints to keep: a loopback address may
		// not be advertised in them.
		"--endpoint-reconciler-type", "none",
		"--profiling=false",
	)
	k.Server = "https://" + secure
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	k.waitFor("kube-apiserver", client, k.Server+"/readyz", token)

	k.Kubeconfig = k.write("kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: carteiro-test
    cluster:
      server: %s
      certificate-authority: %s
users:
  - name: carteiro-test
    user:
      token: %s
contexts:
  - name: carteiro-test
    context: {cluster: carteiro-test, user: carteiro-test}
current-context: carteiro-test
`, k.Server, filepath.Join(k.dir, "apiserver.crt"), token))
	return k
}

// Kubectl runs kubectl against the API server with stdin as its input and
// returns what it wrote to stdout and stderr. Each call has its own
// discovery cache, so kinds added by a CRD a moment ago are found.
func (k *Kubernetes) Kubectl(stdin []byte, args ...string) (stdout, stderr string, err error) {
	k.calls++
	full := append([]string{"--kubeconfig", k.Kubeconfig,
		"--cache-dir", filepath.Join(k.dir, "cache", strconv.Itoa(k.calls))}, args...)
	cmd := exec.Command(k.kubectl, full...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// start runs one server, logging to <dir>/<name>.log, and stops exactly
// that process when the test ends: SIGTERM, then SIGKILL if it lingers.
func (k *Kubernetes) start(name, path string, args ...string) {
	k.t.Helper()
	logFile, err := os.Create(filepath.Join(k.dir, name+".log"))
	if err != nil {
		k.t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		k.t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	k.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	k.exited[name] = exited
}

// waitFor polls url until it answers 200, failing the test (with the end of
// the server's log) if the server exits first or takes unreasonably long.
func (k *Kubernetes) waitFor(name string, client *http.Client, url, token string) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := client.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(res.Status)
		}
		last = err
		select {
		case <-k.exited[name]:
			k.t.Fatalf("%s exited before it was ready (%v):\n%s", name, last, k.logTail(name))
		case <-ctx.Done():
			k.t.Fatalf("%s not ready at %s: %v\n%s", name, url, last, k.logTail(name))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (k *Kubernetes) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(k.dir, name+".log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

func (k *Kubernetes) write(name, content string) string {
	k.t.Helper()
	path := filepath.Join(k.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		k.t.Fatal(err)
	}
	return path
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 (its own
// CA) and its key, and returns the certificate.
func (k *Kubernetes) writeServingCert() []byte {
	k.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		k.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "carteiro-test-apiserver"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		k.t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k.write("apiserver.crt", string(certPEM))
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		k.t.Fatal(err)
	}
	k.write("apiserver.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certPEM
}

// pemKey is a new ECDSA P-256 private key in PEM: the service account
// token signing key (the API server reads the public half from it too).
func pemKey(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
