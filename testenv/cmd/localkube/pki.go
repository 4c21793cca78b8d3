// pki.go creates (or reuses) the certificates and keys of the local cluster:
// a self-signed CA, the kube-apiserver serving certificate, an admin client
// certificate in group system:masters, the ServiceAccount token signing key,
// and the admin kubeconfig that ties them together.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"
)

// certValidity is long enough for any test run; the data dir is disposable.
const certValidity = 10 * 365 * 24 * time.Hour

// pkiFiles are the paths of the generated credentials.
type pkiFiles struct {
	Dir            string
	CACert, CAKey  string
	ServingCert    string
	ServingKey     string
	AdminCert      string
	AdminKey       string
	ServiceAccount string // private key; the apiserver derives the public key from it
}

func newPKIFiles(dir string) pkiFiles {
	p := func(name string) string { return filepath.Join(dir, name) }
	return pkiFiles{
		Dir:    dir,
		CACert: p("ca.crt"), CAKey: p("ca.key"),
		ServingCert: p("apiserver.crt"), ServingKey: p("apiserver.key"),
		AdminCert: p("admin.crt"), AdminKey: p("admin.key"),
		ServiceAccount: p("sa.key"),
	}
}

// ensurePKI generates every missing credential. Existing files are kept so a
// restart on the same data dir keeps issued tokens and kubeconfigs valid.
func ensurePKI(dir string) (pkiFiles, error) {
	f := newPKIFiles(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	caCert, caKey, err := loadOrCreateCA(f.CACert, f.CAKey)
	if err != nil {
		return f, fmt.Errorf("CA: %w", err)
	}
	serving := x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 96, 0, 1)},
	}
	if err := ensureLeaf(f.ServingCert, f.ServingKey, &serving, caCert, caKey); err != nil {
		return f, fmt.Errorf("serving cert: %w", err)
	}
	admin := x509.Certificate{
		Subject:     pkix.Name{CommonName: "localkube-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := ensureLeaf(f.AdminCert, f.AdminKey, &admin, caCert, caKey); err != nil {
		return f, fmt.Errorf("admin cert: %w", err)
	}
	if _, _, err := keyutil.LoadOrGenerateKeyFile(f.ServiceAccount); err != nil {
		return f, fmt.Errorf("service account key: %w", err)
	}
	return f, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func loadOrCreateCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	if exists(certPath) && exists(keyPath) {
		return loadPair(certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := x509.Certificate{
		Subject:               pkix.Name{CommonName: "localkube-ca"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := signAndWrite(certPath, keyPath, &tmpl, key, nil, nil)
	return cert, key, err
}

func ensureLeaf(certPath, keyPath string, tmpl *x509.Certificate, ca *x509.Certificate, caKey crypto.Signer) error {
	if exists(certPath) && exists(keyPath) {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	_, err = signAndWrite(certPath, keyPath, tmpl, key, ca, caKey)
	return err
}

// signAndWrite signs tmpl for key (self-signed when parent is nil) and writes
// both as PEM files.
func signAndWrite(certPath, keyPath string, tmpl *x509.Certificate, key *ecdsa.PrivateKey,
	parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(certValidity)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, err
	}
	if err := keyutil.WriteKey(keyPath, keyPEM); err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, nil, errors.New("no PEM block in " + certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := keyutil.PrivateKeyFromFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("CA key is not a signer")
	}
	return cert, signer, nil
}

// writeAdminKubeconfig writes a self-contained kubeconfig (credentials
// embedded) for the admin identity, atomically
// (temp file + rename) so readers never see a partial file.
func writeAdminKubeconfig(path string, f pkiFiles, port int) error {
	var data [3][]byte
	for i, file := range []string{f.CACert, f.AdminCert, f.AdminKey} {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		data[i] = b
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["localkube"] = &clientcmdapi.Cluster{
		Server:                   fmt.Sprintf("https://127.0.0.1:%d", port),
		CertificateAuthorityData: data[0],
	}
	cfg.AuthInfos["localkube-admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: data[1],
		ClientKeyData:         data[2],
	}
	cfg.Contexts["localkube"] = &clientcmdapi.Context{Cluster: "localkube", AuthInfo: "localkube-admin", Namespace: "default"}
	cfg.CurrentContext = "localkube"
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
