// Package replicas holds the multi-process tests of several tokengate replicas sharing one
// etcd cluster: three `tokengate serve` processes and three etcd members on loopback, with the
// in-process fake Keycloak (internal/kctest). They run when TOKENGATE_INTEGRATION=1 (make test)
// and need the etcd server (scripts/etcd.sh installs it).
package replicas
