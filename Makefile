# Tabby — see README.md. Every target works on a fresh machine with Go installed.
SHELL        := /bin/bash
GO           ?= go
BIN          := bin
TOOLS        ?= $(HOME)/.cache/tabby/tools
STATICCHECK_VERSION := v0.8.2
STATICCHECK  := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
PKGS         := ./...
FUZZTIME     ?= 20s

.PHONY: all build test unit lint fuzz bench demo clean tools

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The test command CI runs: lint, then every test (unit, golden, conformance corpus).
test: lint unit

# -timeout: e2e/lab runs real labs for ~5-6 min (the 30-s API server outage and client-go's reconnect
# backoff alone take up to ~2 min); go test's default 10 min per package would leave no margin on CI.
unit:
	$(GO) test -count=1 -timeout 25m $(PKGS)

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(STATICCHECK)

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

# Short fuzz runs of every parser (go test -fuzz takes one target at a time).
fuzz:
	$(GO) test ./selectors -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzDecodeDocument$$' -fuzztime $(FUZZTIME)
	$(GO) test ./compiler -run '^$$' -fuzz '^FuzzMergePrefixes$$' -fuzztime $(FUZZTIME)

# Benchmarks with a summary table (medians of several runs).
bench: build
	$(GO) run ./cmd/tabby-bench -count 5

# The main job for real: compile the demo app's policies and print what Tabby
# predicts (the lab with real packets comes with the enforcer).
demo: build
	./e2e/demo/demo.sh

clean:
	rm -rf $(BIN)

# Real kube-apiserver, kubectl (v1.35.4) and etcd for the Kubernetes-mode tests (e2e/kubetest),
# built from the module proxy into $(TABBY_CACHE)/kube/<version>/bin (default ~/.cache/tabby).
# A cold build takes 8-20 min on 2 cores; once cached this is a sub-second check.
.PHONY: kube-tools
kube-tools:
	./e2e/kube/build.sh

# Regenerate the CRDs (deploy/crds) and the deepcopy functions of policy/api/v1alpha1 from the Go types,
# with the controller-gen version pinned in deploy/generate.sh (installed on first use into
# $(TABBY_CACHE)/tools, default ~/.cache/tabby); copy the upstream ClusterNetworkPolicy CRD from the
# network-policy-api module (deploy/crds/upstream); render deploy/tabby.yaml with kubectl kustomize (hence
# kube-tools, a sub-second check once cached). deploy's tests fail when the checked-in files are stale.
.PHONY: generate
generate: kube-tools
	./deploy/generate.sh
