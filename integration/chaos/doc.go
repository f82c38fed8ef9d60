// Package chaos is the fault-injection suite: three etcd members, three `tokengate serve`
// replicas each reaching etcd only through TCP proxies the suite can cut or slow, the fake
// Keycloak realm (internal/kctest), the suite's own round-robin client as the load balancer, a
// BFF load generator that renews and exchanges continuously and logs every answer with its
// timestamps, and a stream of back-channel logouts. Faults are injected one scenario at a time
// and three invariants are checked after every step:
//
//   - I1: every logout acknowledged with 200 is refused at every replica within
//     store.max_staleness plus the measured propagation window, for ever after;
//   - I2: no renewal of a logged-out session succeeds at any replica later than that bound;
//   - I3: no acknowledged logout is lost: each is in the store and on the SSF stream.
//
// TOKENGATE_INTEGRATION=1 (make test) runs the short scenarios; TOKENGATE_CHAOS=full (make
// chaos) runs every scenario at full length and publishes the table of docs/reliability.md.
package chaos
