# tokengate — the two commands that matter: `make demo` and `make test`.
GO       ?= go
BIN      := bin
PKGS     := ./...

.PHONY: all build test unit vet fmt-check bench bench-core demo soak chaos clean system-deps etcd nginx \
        caddy chromium keycloak examples staticcheck deps-check deploy-check fuzz schemathesis

all: build

build:
	$(GO) build -o $(BIN)/tokengate ./cmd/tokengate
	$(GO) build -o $(BIN)/tokengate-auth ./cmd/tokengate-auth

## test: formatting, vet, staticcheck, the dependency table, the deploy/ files, every test with
## the race detector (unit, subprocess, and the integration suite against a real Keycloak, which
## scripts/ fetch and cache outside the clone), then short fuzzing and schemathesis runs.
## Everything the tests need is installed or fetched first, one after the other (system-deps,
## keycloak, examples): go test runs packages in parallel, and no test installs anything.
test: system-deps keycloak examples fmt-check vet staticcheck deps-check deploy-check
	TOKENGATE_INTEGRATION=1 $(GO) test -race -count=1 -timeout 25m $(PKGS)
	$(MAKE) --no-print-directory fuzz schemathesis FUZZTIME=$(TEST_FUZZTIME)
	$(MAKE) --no-print-directory bench BENCH=quick

## unit: the fast loop — everything except the real-Keycloak integration suite.
unit: fmt-check vet etcd
	$(GO) test -race -count=1 $(PKGS)

## system-deps: the Debian packages the tests run, each installed with apt-get when missing,
## one after the other under one lock (scripts/lib/apt.sh): etcd, nginx, caddy and Chromium.
system-deps: etcd nginx caddy chromium

## etcd: the store/etcd and integration/replicas tests start real etcd members; install
## Debian's etcd-server when /usr/bin/etcd is missing.
etcd:
	@scripts/etcd.sh ensure

## nginx: integration/services runs its own nginx (auth_request → tokengate-auth); install
## Debian's nginx when /usr/sbin/nginx is missing.
nginx:
	@scripts/nginx.sh ensure

## caddy: integration/services runs its own caddy (forward_auth → tokengate-auth, with
## deploy/forward-auth/Caddyfile); install Debian's caddy when /usr/bin/caddy is missing.
caddy:
	@scripts/caddy.sh ensure

## chromium: the integration suites and make demo drive Keycloak's real login pages in headless
## Chromium; install Debian's chromium when no Chromium is on PATH. Tests only ask its path.
chromium:
	@scripts/chromium.sh ensure

## keycloak: fetch and unpack (once, outside the clone) the Keycloak distributions the integration
## suites start: scripts/keycloak.sh's default and integration/kc265's older line; check for a JDK 21+.
KEYCLOAK_PREVIOUS ?= 26.5.6
keycloak:
	@scripts/keycloak.sh fetch >/dev/null
	@KEYCLOAK_VERSION=$(KEYCLOAK_PREVIOUS) scripts/keycloak.sh fetch >/dev/null
	@scripts/keycloak.sh java >/dev/null

## examples: the Java and Python proofs (examples/verify-*) need Nimbus JOSE+JWT (into ~/.m2,
## by mvn) and PyJWT (into a virtualenv under ~/.cache/tokengate, by pip), and examples/bff-spring
## its Maven build's dependencies (Spring Boot, into ~/.m2; integration/spring builds offline);
## installed once.
examples:
	@scripts/examples.sh ensure

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## staticcheck: pinned by scripts/tools.sh, which installs it once outside the clone.
staticcheck:
	@sc=$$(scripts/tools.sh staticcheck) && $$sc $(PKGS)

## deps-check: README.md's Dependencies table lists exactly go.mod's direct requirements.
deps-check:
	@scripts/deps.sh check

## deploy-check: deploy/ offline — kubeconform (strict, Kubernetes schemas from a PyPI wheel),
## hadolint, systemd-analyze verify and security.
deploy-check: build
	@TOKENGATE_BIN=$(BIN)/tokengate TOKENGATE_AUTH_BIN=$(BIN)/tokengate-auth scripts/deploy-check.sh

## fuzz: every FuzzXxx target for FUZZTIME each (longer: FUZZTIME=5m make fuzz); make test
## fuzzes TEST_FUZZTIME each, a smoke run that keeps a warm make test under 15 minutes (what the
## fuzzer found interesting stays in Go's build cache, so each run goes on from the last).
FUZZTIME ?= 10s
TEST_FUZZTIME ?= 6s
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

## schemathesis: the admin API of a real `tokengate serve`, attacked from its own OpenAPI
## document (no 5xx, every answer documented and matching its schema); ST_MAX_TIME (45) seconds.
schemathesis: build
	TOKENGATE_BIN=$(BIN)/tokengate scripts/schemathesis.sh

## demo: Keycloak + tokengate + demo-bff + demo-service; plays the logout story headless in
## Chromium, prints the timeline, then keeps running until Ctrl-C (DEMO_FLAGS=--no-wait to stop).
demo: chromium
	scripts/demo.sh $(DEMO_FLAGS)

## bench-core: the core benchmarks quoted in docs/performance.md (signing floor, renewal, exchange, store),
## 6 rounds of every benchmark, interleaved so that the machine's drift hits each alike;
## benchstat prints the medians with their spread. Raw runs: results/bench-core.txt.
bench-core:
	@mkdir -p results
	@rm -f results/bench-core.txt
	for i in 1 2 3 4 5 6; do \
		$(GO) test -run '^$$' -bench . -benchtime 2s -count 1 ./cmd/internal/app/ ./internal/store/bolt/ >> results/bench-core.txt \
			|| { cat results/bench-core.txt; exit 1; }; \
	done
	$$(scripts/tools.sh benchstat) results/bench-core.txt

## bench: tokengate side by side with per-request introspection, in one run against a real
## Keycloak (scripts/keycloak.sh, KC_JIT=full): JSON, markdown, PNG and CPU profiles under
## results/bench/. The full run also rewrites the docs/performance.md section between the
## <!-- bench --> markers and docs/bench.png, then adds the multi-process revocation windows (scripts/bench-extra.sh:
## replicas on etcd, services on the Shared Signals feed) and the RSS per live session (tokengate-load
## -memory, the <!-- bench-memory --> block). BENCH=quick is the short run (< 3 min)
## that `make test` ends with; the same tests run there under go test.
BENCH ?= full
## MEMORY_SESSIONS: the live-session counts of the full bench's memory row (RSS per live session).
MEMORY_SESSIONS ?= 100000,1000000
bench: build
	$(GO) build -o $(BIN)/tokengate-bench ./cmd/tokengate-bench
	$(BIN)/tokengate-bench -bin $(BIN)/tokengate -out results/bench $(if $(filter quick,$(BENCH)),-quick,-publish) $(BENCH_FLAGS)
	$(if $(filter quick,$(BENCH)),,scripts/bench-extra.sh --publish)
	$(if $(filter quick,$(BENCH)),,$(GO) run ./cmd/tokengate-load -bin $(BIN)/tokengate -memory $(MEMORY_SESSIONS) \
		-out results/bench -publish docs/performance.md -command "make bench (tokengate-load -memory $(MEMORY_SESSIONS))")

## chaos: the fault-injection suite (integration/chaos) at full length: 3 etcd members, 3 replicas
## behind cut/slow TCP proxies, a BFF load generator and a logout stream; partition, etcd leader
## and quorum loss, rolling restart, disk full, Keycloak down (fake realm; and Keycloak 26.7.3 with
## its Shared Signals stream, as root for its tmpfs), a clock step (a -tags chaosclock replica),
## kill -9 — invariants I1–I3 checked after every step (docs/reliability.md). Under 15 minutes on
## 2 cores; rewrites the
## <!-- chaos --> block of docs/reliability.md; JSON and markdown under results/chaos/.
## `make test` runs the short scenarios (1, 3, 4) of the same package.
chaos: etcd
	TOKENGATE_CHAOS=full TOKENGATE_CHAOS_OUT=$(CURDIR)/results/chaos \
		TOKENGATE_CHAOS_PUBLISH=$(CURDIR)/docs/reliability.md \
		$(GO) test -count=1 -timeout 20m -v ./integration/chaos/

## soak: ten minutes of steady renewals, logouts and two key rotations against the real binary
## (fake Keycloak in-process); fails on any unexpected error, missed logout, or memory/goroutine growth.
SOAK_DURATION ?= 10m
soak: build
	$(GO) run ./cmd/tokengate-load -bin $(BIN)/tokengate -duration $(SOAK_DURATION) -out results/soak

clean:
	rm -rf $(BIN)
