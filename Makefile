# carteiro — the one entry point. `make` (or `make help`) lists the targets.
#
# Native development: `make dev` builds bin/api, bin/worker, bin/devstack,
# bin/mailpit and starts Mailpit, api, worker and nginx in the background
# (bin/devstack up: cmd/devstack, package internal/devstack); Postgres and
# Redis must already run on 127.0.0.1. `make dev-down` stops them.
# `make dev OBS=1` also builds bin/jaeger and bin/otelcol and starts Jaeger
# (traces, UI on 127.0.0.1:16686), the OpenTelemetry Collector (OTLP on
# 127.0.0.1:4317/4318: span metrics, tail sampling), Prometheus
# (127.0.0.1:9090), Alertmanager (alerts mailed to Mailpit; 127.0.0.1:9093)
# and the nginx, Postgres and Redis exporters.
# Containers: `make up` / `make down` (needs a Docker engine).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO ?= go
BIN_DIR := bin
TOOLS_DIR := scripts/tools
# make up, down, logs and load run $(COMPOSE): your own `docker compose` when
# your docker has one (`docker compose version` answers), else the Compose
# and buildx plugins `make docker-tools` builds into bin/docker-config (with
# DOCKER_CONFIG set to it and DOCKER_HOST to the engine of your current
# context, as the compose test runs them: deploy/composetest.EngineEnv), so
# ~/.docker is never written; neither: an error naming make docker-tools,
# except where docker-tools is a prerequisite (make up STANDINS=1: the plugins
# are built before compose runs, so `make -n` prints them run).
# Evaluated only by the targets that use it; `make up COMPOSE=...` to choose.
COMPOSE ?= $(compose_command)
COMPOSE_FILES := -f docker-compose.yml -f docker-compose.observability.yml
# `make test GO_TEST_FLAGS='-run TestX -v'` to narrow a run.
GO_TEST_FLAGS ?= -count=1 -timeout 20m
# `make dev OBS=1`: the native stack with Jaeger, Prometheus, Alertmanager and the exporters.
OBS ?= 0

# The tools module is independent of the root go.mod.
TOOLS_GO := cd $(TOOLS_DIR) && GOWORK=off $(GO)

# kube-apiserver and kubectl (make kubernetes): their own tools module,
# scripts/tools/kubernetes (see its go.mod). KUBERNETES_VERSION must be the
# k8s.io/kubernetes version that module requires (a test checks it); it is
# stamped into both binaries, as Kubernetes' own build does, or they report
# v0.0.0. KUBE_TOOLS_DIR/crds pins the modules whose CRD manifests the tests
# install (KEDA, Prometheus Operator, Gateway API); nothing is built there.
KUBE_TOOLS_DIR := $(TOOLS_DIR)/kubernetes
KUBERNETES_VERSION := v1.37.2
KUBE_VERSION_LDFLAGS = $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(KUBERNETES_VERSION) \
	-X $(pkg).gitMajor=$(word 1,$(subst ., ,$(KUBERNETES_VERSION:v%=%))) \
	-X $(pkg).gitMinor=$(word 2,$(subst ., ,$(KUBERNETES_VERSION:v%=%))) \
	-X $(pkg).gitTreeState=clean)
KUBE_GO := cd $(KUBE_TOOLS_DIR) && GOWORK=off CGO_ENABLED=0 $(GO)

.PHONY: help build devstack standinenv tools jaeger otelcol kubernetes test-kubernetes images docker-tools test-compose dev dev-down dev-status test fuzz bench chaos soak up down logs load fmt vet secrets clean

help: ## List the targets
	@echo 'usage: make TARGET [VAR=value]'
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN { FS = ":.*## " } { name[NR] = $$1; text[NR] = $$2; if (length($$1) > w) w = length($$1) } \
			END { for (i = 1; i <= NR; i++) printf "  %-" w "s  %s\n", name[i], text[i] }'
	@echo
	@echo 'variables: OBS=1 (dev with Jaeger, Prometheus, Alertmanager and the exporters:'
	@echo '                  make dev OBS=1; UIs on 127.0.0.1:16686, :9090 and :9093),'
	@echo '           RATE_LIMIT=0 (dev without the nginx /api rate limit),'
	@echo '           STANDINS=1 (up, down, logs on the compose test'"'"'s stand-in images, no registry:'
	@echo '                  make up STANDINS=1; project carteiro-standins, no Grafana),'
	@echo '           API_INSTANCES, WORKER_INSTANCES, DEV_DIR, listen addresses...'
	@echo '                  (every knob of make dev: README "Configuration"),'
	@echo '           GO_TEST_FLAGS (default: $(GO_TEST_FLAGS)),'
	@echo '           DURATION, SOAK_RATE (make soak DURATION=10m SOAK_RATE=20),'
	@echo '           BENCH_DURATION, BENCH_N, BENCH_E2E_DURATION (make bench; scripts/bench/doc.go)'

build: devstack ## Build bin/api, bin/worker and bin/devstack (the native stack launcher)
	$(GO) build -o $(BIN_DIR)/api ./services/api
	$(GO) build -o $(BIN_DIR)/worker ./services/worker

devstack: ## Build bin/devstack alone (make dev-down and dev-status need only it)
	$(GO) build -o $(BIN_DIR)/devstack ./cmd/devstack

tools: $(BIN_DIR)/mailpit ## Build bin/mailpit (only when missing or scripts/tools/go.sum changed)

# go build leaves an up-to-date binary untouched, so touch it: otherwise an
# older mtime than go.sum would rebuild it on every run.
$(BIN_DIR)/mailpit: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum
	$(TOOLS_GO) build -o $(abspath $@) github.com/axllent/mailpit
	touch $@

jaeger: $(BIN_DIR)/jaeger ## Build bin/jaeger (Jaeger v2, slow: minutes; not part of tools)

$(BIN_DIR)/jaeger: $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum
	$(TOOLS_GO) build -o $(abspath $@) github.com/jaegertracing/jaeger/cmd/jaeger
	touch $@

# The OpenTelemetry Collector between the services and Jaeger/Prometheus
# (observability/otelcol/config.yaml): its own tools module,
# scripts/tools/otelcol (a small main listing exactly the components used,
# from one collector release; Jaeger's module pins an older collector).
# Static, so the compose test's stand-in image copies it as is. Minutes on
# a cold build cache; the time is printed.
OTELCOL_TOOLS := $(TOOLS_DIR)/otelcol

otelcol: $(BIN_DIR)/otelcol ## Build bin/otelcol (the OpenTelemetry Collector, OBS=1; only when missing or scripts/tools/otelcol changed)

$(BIN_DIR)/otelcol: $(OTELCOL_TOOLS)/go.mod $(OTELCOL_TOOLS)/go.sum $(OTELCOL_TOOLS)/main.go
	@mkdir -p $(BIN_DIR)
	@echo "otelcol: building the OpenTelemetry Collector (minutes on a cold build cache)"
	@start=$$(date +%s); \
	cd $(OTELCOL_TOOLS) && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(abspath $@) . ; \
	echo "otelcol: built in $$(( $$(date +%s) - start )) s"
	touch $@

# --- Docker Engine tooling (make up, make test-compose) ----------------------
# Compose v5 and buildx as Docker CLI plugins, and Prometheus 3 for the
# compose test's stand-in image, each from its own tools module (their
# dependency graphs and Jaeger's do not agree). File targets: a rerun reuses
# them until the module's go.mod or go.sum changes. The versions are read from
# the go.mod files (renovate.json keeps them current) and stamped into the
# binaries: Compose refuses a buildx that reports no version.
COMPOSE_TOOLS := $(TOOLS_DIR)/compose
BUILDX_TOOLS := $(TOOLS_DIR)/buildx
PROMETHEUS_TOOLS := $(TOOLS_DIR)/prometheus
module_version = $(shell awk '$$1 == "$(2)" { print $$2; exit }' $(1)/go.mod)
COMPOSE_VERSION := $(call module_version,$(COMPOSE_TOOLS),github.com/docker/compose/v5)
BUILDX_VERSION := $(call module_version,$(BUILDX_TOOLS),github.com/docker/buildx)
# Go module v0.3XX.Y of github.com/prometheus/prometheus is Prometheus 3.XX.Y.
PROMETHEUS_MODULE_VERSION := $(call module_version,$(PROMETHEUS_TOOLS),github.com/prometheus/prometheus)
PROMETHEUS_VERSION := $(shell echo '$(PROMETHEUS_MODULE_VERSION)' | \
	awk -F. '{ sub(/^v0/, "", $$1); printf "%d.%d.%s", $$2 / 100, $$2 % 100, $$3 }')
# The plugins' own Docker configuration directory: the compose test runs the
# docker CLI with DOCKER_CONFIG set to it (deploy/composetest.EngineEnv, on
# the engine your own configuration selects; make up too when your docker
# has no compose: COMPOSE), so your ~/.docker and the
# plugins in it are neither used nor overwritten.
CLI_PLUGINS_DIR := $(BIN_DIR)/docker-config/cli-plugins
DOCKER_PLUGINS := $(CLI_PLUGINS_DIR)/docker-compose $(CLI_PLUGINS_DIR)/docker-buildx
compose_command = $(strip $(if $(shell docker compose version >/dev/null 2>&1 && echo yes),docker compose,\
	$(if $(or $(wildcard $(CLI_PLUGINS_DIR)/docker-compose),$(plugins_built_first)),\
		DOCKER_HOST='$(shell docker context inspect --format '{{.Endpoints.docker.Host}}')' DOCKER_CONTEXT= \
		DOCKER_CONFIG='$(abspath $(BIN_DIR)/docker-config)' docker compose,\
		$(error no Docker Compose: your docker has no `compose` command and $(CLI_PLUGINS_DIR)/docker-compose is missing; run `make docker-tools` (it builds the project's own into $(CLI_PLUGINS_DIR), never into ~/.docker)))))

docker-tools: $(DOCKER_PLUGINS) $(BIN_DIR)/prometheus ## Build the docker-compose and docker-buildx CLI plugins into bin/docker-config/cli-plugins (the compose test's, and make up's when your docker has no compose; never ~/.docker's), build bin/prometheus (minutes on a cold cache)

$(BIN_DIR)/docker-compose: $(COMPOSE_TOOLS)/go.mod $(COMPOSE_TOOLS)/go.sum
	cd $(COMPOSE_TOOLS) && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags '-s -w -X github.com/docker/compose/v5/internal.Version=$(COMPOSE_VERSION)' \
		-o $(abspath $@) github.com/docker/compose/v5/cmd
	touch $@

$(BIN_DIR)/docker-buildx: $(BUILDX_TOOLS)/go.mod $(BUILDX_TOOLS)/go.sum
	cd $(BUILDX_TOOLS) && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags '-s -w -X github.com/docker/buildx/version.Version=$(BUILDX_VERSION) -X github.com/docker/buildx/version.Package=github.com/docker/buildx' \
		-o $(abspath $@) github.com/docker/buildx/cmd/buildx
	touch $@

# Static (CGO_ENABLED=0): the stand-in image copies it as is. The web UI's
# assets are not embedded (they need an npm build): the API, /-/ready and
# /metrics are what the tests use. remove_all_sd (Prometheus's own build tag)
# leaves out the cloud service discoveries (1,021 packages to compile instead
# of 1,462 for v0.313.2): carteiro's configurations use static targets only.
$(BIN_DIR)/prometheus: $(PROMETHEUS_TOOLS)/go.mod $(PROMETHEUS_TOOLS)/go.sum
	cd $(PROMETHEUS_TOOLS) && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -tags remove_all_sd \
		-ldflags '-s -w -X github.com/prometheus/common/version.Version=$(PROMETHEUS_VERSION) -X github.com/prometheus/common/version.Branch=$(PROMETHEUS_MODULE_VERSION) -X github.com/prometheus/common/version.BuildUser=carteiro' \
		-o $(abspath $@) github.com/prometheus/prometheus/cmd/prometheus
	touch $@

$(CLI_PLUGINS_DIR)/docker-%: $(BIN_DIR)/docker-%
	install -D -m 0755 $< $@

kubernetes: $(BIN_DIR)/kube-apiserver $(BIN_DIR)/kubectl ## Build bin/kube-apiserver and bin/kubectl (slow on a cold build cache: minutes; only when scripts/tools/kubernetes changed)

# One go build for both: they share most packages. A grouped target (&:), so
# make runs the recipe once for the pair.
$(BIN_DIR)/kube-apiserver $(BIN_DIR)/kubectl &: $(KUBE_TOOLS_DIR)/go.mod $(KUBE_TOOLS_DIR)/go.sum
	@mkdir -p $(BIN_DIR)
	@echo "kubernetes: building kube-apiserver and kubectl $(KUBERNETES_VERSION) (minutes on a cold build cache)"
	@start=$$(date +%s); \
	$(KUBE_GO) build -trimpath -ldflags '-s -w $(strip $(KUBE_VERSION_LDFLAGS))' -o $(abspath $(BIN_DIR))/ \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl; \
	echo "kubernetes: built in $$(( $$(date +%s) - start )) s"
	touch $(BIN_DIR)/kube-apiserver $(BIN_DIR)/kubectl

# Every knob of the native stack is an environment variable (README
# "Configuration"); make passes its command-line variables on as such:
# make dev API_INSTANCES=2 RATE_LIMIT=0.
dev: build tools $(if $(filter 1,$(OBS)),jaeger otelcol) ## Build, then start Mailpit, api, worker and nginx natively (OBS=1: also Jaeger, the collector, Prometheus, Alertmanager, exporters; RATE_LIMIT=0: no rate limit)
	OBS=$(OBS) $(BIN_DIR)/devstack up

dev-down: devstack ## Stop the native stack started by `make dev`
	$(BIN_DIR)/devstack down

dev-status: devstack ## One line per native component
	$(BIN_DIR)/devstack status

# bin/jaeger and bin/otelcol are prerequisites because the observability
# end-to-end tests start private stacks with OBS=1 (Jaeger, the collector,
# Prometheus) on free ports;
# bin/kube-apiserver and bin/kubectl because the Kubernetes manifest tests
# (services/internal/deploy/kubernetes*_test.go, also `make test-kubernetes`)
# render the overlays and apply them to a private API server.
test: build tools jaeger otelcol kubernetes ## go vet, every test (e2e tests use bin/, including bin/jaeger and bin/otelcol; the Kubernetes manifests against a real kube-apiserver; the chaos suite's short version), then each fuzz target briefly
	$(GO) vet ./...
	@mkdir -p $(dir $(CHAOS_REPORT)) && rm -f $(CHAOS_REPORT) $(KUBERNETES_REPORT)
	BIN_DIR=$(abspath $(BIN_DIR)) CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) KUBERNETES_REPORT=$(abspath $(KUBERNETES_REPORT)) \
		$(GO) test $(GO_TEST_FLAGS) ./...
	@if [ -s $(CHAOS_REPORT) ]; then echo 'chaos (short version):'; cat $(CHAOS_REPORT); fi
	@if [ -s $(KUBERNETES_REPORT) ]; then echo 'kubernetes:'; cat $(KUBERNETES_REPORT); fi
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory test-compose

# `make up`'s stack under the Docker Engine (deploy/composetest, README "How
# make up is proven"): stand-in images for the official ones (built once per
# machine, reused while their inputs are unchanged), services/Dockerfile built
# for real, then states checked: health, delivery and trace, segmentation,
# published ports, hardening, restarts, kills, volumes. Needs a running
# dockerd (scripts/ci-deps.sh starts one) and root (debootstrap). Prints the
# time it adds, tool builds included.
COMPOSE_TEST_TIMEOUT ?= 60m

test-compose: ## Run make up's compose stack under the Docker Engine with stand-in images and check it (deploy/composetest; minutes, more on a cold machine)
	@start=$$(date +%s); rc=0; \
	$(MAKE) --no-print-directory build tools jaeger otelcol docker-tools secrets && \
	$(GO) vet -tags composetest ./deploy/composetest/... && \
	BIN_DIR=$(abspath $(BIN_DIR)) $(GO) test -tags composetest -count=1 -timeout $(COMPOSE_TEST_TIMEOUT) -v \
		-run '^TestComposeUnderEngine$$' ./deploy/composetest/ || rc=$$?; \
	echo "test-compose: $$(( $$(date +%s) - start )) s, tool and image builds included (exit $$rc)"; \
	exit $$rc

# The Kubernetes manifest tests alone: every overlay rendered by kubectl
# kustomize, applied to a private kube-apiserver (Debian's etcd-server),
# checked against the policy, docker-compose.yml and the code, and the
# NetworkPolicies compared with compose's networks (printed).
KUBERNETES_REPORT := artifacts/kubernetes-report.txt
KUBERNETES_TESTS := ^(TestKubernetes.*|TestNetworkEvaluator|TestFrontendImage)$$

test-kubernetes: kubernetes ## Only the Kubernetes manifest tests (deploy/kubernetes), against bin/kube-apiserver
	@mkdir -p $(dir $(KUBERNETES_REPORT)) && rm -f $(KUBERNETES_REPORT)
	BIN_DIR=$(abspath $(BIN_DIR)) KUBERNETES_REPORT=$(abspath $(KUBERNETES_REPORT)) \
		$(GO) test -count=1 -run '$(KUBERNETES_TESTS)' ./services/internal/deploy/
	@cat $(KUBERNETES_REPORT)

# The images the Kubernetes overlays run (deploy/kubernetes; dev uses the tag
# dev), from the same pins as compose (.env). Load them into a local cluster
# with `kind load docker-image …` or `minikube image load …`.
IMAGE_TAG ?= dev
dotenv = $(shell sed -n 's/^$(1)=//p' .env)

images: ## Build carteiro/api, carteiro/worker and carteiro/frontend (IMAGE_TAG, default dev) for Kubernetes
	for s in api worker; do \
		docker build -f services/Dockerfile --target $$s --build-arg SERVICE=$$s \
			--build-arg GO_IMAGE='$(call dotenv,GO_IMAGE)' --build-arg RUNTIME_IMAGE='$(call dotenv,RUNTIME_IMAGE)' \
			-t carteiro/$$s:$(IMAGE_TAG) . ; \
	done
	docker build -f deploy/frontend/Dockerfile --build-arg NGINX_IMAGE='$(call dotenv,NGINX_IMAGE)' \
		-t carteiro/frontend:$(IMAGE_TAG) .

# The fault-injection suite (services/chaos): each scenario prints
# `<scenario>: accepted=N sent=N lost=0 duplicates=K`. go test shows a
# passing package's output only with -v, so the lines (and the figures:
# latencies, rates, RSS) are also collected in CHAOS_REPORT and printed.
CHAOS_REPORT := artifacts/chaos-report.txt
CHAOS_TIMEOUT ?= 60m
DURATION ?= 10m
SOAK_RATE ?= 20

chaos: build tools ## Fault-injection suite, full size (CHAOS_SCALE=full: kill -9, Redis and Postgres loss, SMTP 451/550, SIGTERM, 10,000 messages over 2 apis and 3 workers, soak)
	@mkdir -p $(dir $(CHAOS_REPORT)) && rm -f $(CHAOS_REPORT)
	BIN_DIR=$(abspath $(BIN_DIR)) CHAOS_SCALE=full CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) \
		$(GO) test -count=1 -timeout $(CHAOS_TIMEOUT) -v ./services/chaos/
	@echo; echo 'chaos:'; cat $(CHAOS_REPORT)

# The soak ends by itself after DURATION (then waits for delivery), so the
# go test timeout is off.
soak: build tools ## Only the soak scenario, for DURATION (default 10m) at SOAK_RATE msg/s (default 20); prints api and worker RSS at start and end
	@mkdir -p $(dir $(CHAOS_REPORT)) && rm -f $(CHAOS_REPORT)
	BIN_DIR=$(abspath $(BIN_DIR)) SOAK_DURATION=$(DURATION) SOAK_RATE=$(SOAK_RATE) CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) \
		$(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./services/chaos/
	@echo; echo 'soak:'; cat $(CHAOS_REPORT)

# Each fuzz target, for FUZZTIME. Failing inputs land in the package's
# testdata/fuzz/<Target>/ and become part of the regular test run.
FUZZTIME ?= 15s
FUZZ_TARGETS := FuzzCreateMessage:./services/api FuzzCharset:./services/api FuzzValidate:./services/internal/message

fuzz: ## Run each fuzz target for FUZZTIME (default 15s)
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) "$${t#*:}" || exit 1; \
	done

# Figures, never pass/fail: a private native stack (its own ports, database
# and redis-server; a running `make dev` is not disturbed), observability off
# then on. Prints a table and writes bench/results.json; exits non-zero only
# when something broke. Quick run:
#   make bench BENCH_DURATION=3s BENCH_N=2000 BENCH_E2E_DURATION=10s
bench: build tools jaeger otelcol ## Measure pgbench/accept/delivery/end-to-end/RSS against this machine's limits (bench/results.json)
	$(GO) build -o $(BIN_DIR)/bench ./scripts/bench
	BENCH_COMMAND='make bench $(strip $(MAKEOVERRIDES))' $(BIN_DIR)/bench

# STANDINS=1: make up, down and logs on the compose test's stand-in images,
# for a machine that reaches no image registry (README "`make up` with no
# registry"). bin/standinenv (deploy/composetest/standinenv) builds the
# stand-ins that are missing, as make test-compose does (a Debian mirror; the
# Debian base needs root and debootstrap: build it alone first with `sudo
# bin/standinenv -base`, then make up as yourself, so bin/ and .secrets/ stay
# yours), and prints their image variables and the project name
# (carteiro-standins); down and logs take the name alone (-project-only), so
# they build no image. The test's override file is added to the compose files.
# Empty (STANDINS= in the environment or on the command line) is 0, as unset:
# only another value stops make, for every target.
STANDINS ?= 0
ifeq ($(filter 0 1,$(or $(strip $(STANDINS)),0)),)
$(error STANDINS=$(STANDINS): give 0 (make up pulls the images of .env) or 1 (the stand-ins))
endif
STANDINS_OVERRIDE := deploy/composetest/compose.test-override.yml
# standins_on is 1 under STANDINS=1, else empty.
standins_on := $(filter 1,$(STANDINS))
# $(call standins,ARGS): what goes before $(COMPOSE) under STANDINS=1.
standins = $(if $(standins_on),vars=$$(BIN_DIR='$(abspath $(BIN_DIR))' $(BIN_DIR)/standinenv$(if $(1), $(1))) && env $$vars )
standins_files = $(if $(standins_on), -f $(STANDINS_OVERRIDE))

# plugins_built_first: docker-tools is among up's prerequisites (COMPOSE).
up: plugins_built_first := $(standins_on)
up: secrets $(if $(standins_on),standinenv tools jaeger otelcol docker-tools) ## Build images and start the compose stack (with the observability overlay); returns when every service is healthy (STANDINS=1: on the stand-ins, no registry)
	$(call standins)$(COMPOSE) $(COMPOSE_FILES)$(standins_files) up -d --build --wait

down: $(if $(standins_on),standinenv) ## Stop the compose stack (STANDINS=1: the one on the stand-ins)
	$(call standins,-project-only)$(COMPOSE) $(COMPOSE_FILES)$(standins_files) down

logs: $(if $(standins_on),standinenv) ## Follow the compose stack's logs (STANDINS=1: the one on the stand-ins)
	$(call standins,-project-only)$(COMPOSE) $(COMPOSE_FILES)$(standins_files) logs -f --tail=100

standinenv: ## Build bin/standinenv alone (make up STANDINS=1 runs it)
	$(GO) build -o $(BIN_DIR)/standinenv ./deploy/composetest/standinenv

# Every variable given on make's command line reaches the script (k6's
# __ENV): make load SCRIPT=load RATE=8 DURATION=5m.
load: secrets ## Run a k6 script in compose against the stack (SCRIPT=smoke|load|stress|soak, default smoke; its variables on the command line, README "Load tests"); results on Grafana's k6 dashboard
	$(if $(standins_on),$(error load: STANDINS=1 is for up, down and logs; k6 has no stand-in (K6_IMAGE is pulled)))
	@test -f scripts/k6/$(or $(SCRIPT),smoke).js || { echo 'load: no scripts/k6/$(SCRIPT).js' >&2; exit 1; }
	$(COMPOSE) $(COMPOSE_FILES) --profile load run --rm \
		$(strip $(foreach v,$(sort $(.VARIABLES)),$(if $(filter command line,$(origin $(v))),-e '$(v)=$($(v))'))) \
		k6 run /scripts/$(or $(SCRIPT),smoke).js

fmt: ## gofmt the Go code
	$(GO) fmt ./...

vet: ## go vet the Go code
	$(GO) vet ./...

# Compose (non-swarm) bind-mounts secret files with their host owner and mode,
# so the files are world-readable for the containers' non-root users while the
# 0700 directory keeps other host users out.
secrets: ## Create .secrets/db_password, redis_password, grafana_admin_password and the exporters' pg_exporter_password, redis_exporter_password if missing
	@mkdir -p .secrets
	@chmod 700 .secrets
	@for f in db_password redis_password grafana_admin_password pg_exporter_password redis_exporter_password; do \
		if [ ! -s .secrets/$$f ]; then \
			v=$$(openssl rand -hex 24 2>/dev/null || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'); \
			[ $${#v} -eq 48 ] || { echo "secrets: could not generate a random value" >&2; exit 1; }; \
			printf '%s' "$$v" > .secrets/$$f; \
			chmod 644 .secrets/$$f; \
			echo "secrets: wrote .secrets/$$f"; \
		fi; \
	done

clean: devstack ## Stop the native stack, remove bin/, .dev/ and coverage files
	$(BIN_DIR)/devstack down
	rm -rf $(BIN_DIR) .dev
	rm -f coverage.out coverage.html cover.out *.coverprofile
