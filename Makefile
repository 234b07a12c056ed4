# Atrium — build, run and test. `make help` lists the targets.
GO       ?= go
BIN      ?= bin
PKG      := github.com/atrium-iot/atrium
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCH    ?= .
BENCHTIME ?= 1s
COUNT    ?= 1

.PHONY: help build run test vet lint ci engines integration bench fmt fmt-check agent-all clean test-rabbitmq-restart

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build atrium, atrium-agent and atrium-sim into bin/
	@mkdir -p $(BIN)
	@echo "build: compiling atrium, atrium-agent and atrium-sim into $(BIN)/ (the first build downloads modules and takes a minute)"
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

run: build ## run the whole system on embedded defaults (Ctrl-C stops it)
	@./scripts/run.sh

test: fmt-check vet lint ## unit and integration tests with the race detector, vet and staticcheck
	$(GO) test -race -count=1 -timeout 20m ./...

vet: ## go vet
	$(GO) vet ./...

lint: ## staticcheck
	$(GO) run $(STATICCHECK) ./...

engines: ## install when absent and start the engines of the integration tests: RabbitMQ :5672, ClickHouse :9000, MongoDB-wire :27017, Chromium
	@./scripts/engines.sh

ci: engines ## what CI runs: engines, every test with integration tests required, cross builds
	ATRIUM_REQUIRE_INTEGRATION=1 \
	ATRIUM_TEST_AMQP_URL=$${ATRIUM_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/} \
	ATRIUM_TEST_CLICKHOUSE_URL=$${ATRIUM_TEST_CLICKHOUSE_URL:-clickhouse://127.0.0.1:9000/analytics_test} \
	ATRIUM_TEST_MONGODB_URL=$${ATRIUM_TEST_MONGODB_URL:-mongodb://127.0.0.1:27017/} \
	$(MAKE) test
	$(MAKE) test-rabbitmq-restart
	$(MAKE) agent-all

test-rabbitmq-restart: ## restart RabbitMQ (stop_app/start_app) under a running sensor+room pair; run alone, it restarts the broker
	ATRIUM_TEST_RABBITMQ_RESTART=1 ATRIUM_REQUIRE_INTEGRATION=1 \
	ATRIUM_TEST_AMQP_URL=$${ATRIUM_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/} \
	$(GO) test -count=1 -run 'RabbitMQRestart' ./cloud/

bench: ## benchmarks (BENCH=regexp COUNT=n); compare runs with benchstat
	$(GO) test -run='^$$' -bench='$(BENCH)' -benchmem -benchtime=$(BENCHTIME) -count=$(COUNT) ./... | tee bench.txt

fmt: ## gofmt the tree
	gofmt -s -w .

fmt-check:
	@out=$$(gofmt -s -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

agent-all: ## cross-compile the agent for linux amd64, arm64 and arm v7 (pure Go)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/atrium-agent-linux-amd64 ./cmd/atrium-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/atrium-agent-linux-arm64 ./cmd/atrium-agent
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/atrium-agent-linux-armv7 ./cmd/atrium-agent

clean: ## remove build outputs
	rm -rf $(BIN) bench.txt
