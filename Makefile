# Every target works offline with no AWS account and no credentials.
SHELL := /bin/bash
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_REGION ?= us-east-1
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := true

# node_modules holds .go template files; npm's postinstall writes
# node_modules/go.mod, so Go treats it as another module and ./... leaves it out.
#
# The tests are split by what they need, computed from their imports rather
# than listed: tests that import the CDK (through jsii) or run binaries under
# the Lambda emulator exercise our code in other processes and run without
# the race detector (a race build of aws-cdk-go alone takes minutes and a GB);
# every other package with tests runs in-process with it.
GO_TEST_DEPS = go list -test -f '{{if .ForTest}}{{.ForTest}} {{join .Deps " "}}{{end}}' ./...
GO_OUT_OF_PROCESS_TESTS = $(shell $(GO_TEST_DEPS) | awk '/ github.com\/aws\/jsii-runtime-go( |$$)| github.com\/circuitbreaked\/lambda-circuit-breaker\/internal\/testutil\/rie( |$$)/ {print $$1}' | sort -u)
GO_UNIT_TESTS = $(filter-out $(GO_OUT_OF_PROCESS_TESTS),$(shell go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...))

.PHONY: all synth test test-fast test-load test-clients vet bench bench-clients bench-detect bench-fleet bench-fleet-hour local clean local

all: synth

# npm ci runs the postinstall script that writes node_modules/go.mod; run it
# again should npm have been told to skip scripts.
node_modules/go.mod: package.json package-lock.json
	npm ci --no-audit --no-fund
	@test -f $@ || npm run --silent postinstall
	@touch $@

## synth: build the Go binaries and synthesize the stack into cdk.out/
synth: node_modules/go.mod
	npx --no-install cdk synth --quiet
	@echo "template: cdk.out/LambdaCircuitBreakerStack.template.json"

## vet: gofmt and go vet
vet: node_modules/go.mod
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet ./...

## test-fast: the in-process tests, with the race detector (no synth, no emulator)
test-fast: node_modules/go.mod
	go test -race -count=1 $(GO_UNIT_TESTS)

## test-load: test-fast LOAD_RUNS times (default 5) while a busy loop per core keeps the machine loaded; prints the runs that passed
LOAD_RUNS ?= 5
test-load: node_modules/go.mod
	@n=$$(nproc); pids=""; \
	for i in $$(seq $$n); do timeout $$(( $(LOAD_RUNS) * 1800 )) sh -c 'while :; do :; done' & pids="$$pids $$!"; done; \
	trap 'kill $$pids 2>/dev/null' EXIT INT TERM; \
	passed=0; \
	for r in $$(seq $(LOAD_RUNS)); do \
		echo "== run $$r of $(LOAD_RUNS), $$n busy loops"; \
		if go test -race -count=1 $(GO_UNIT_TESTS); then passed=$$((passed + 1)); fi; \
	done; \
	echo "== $$passed of $(LOAD_RUNS) loaded runs passed"; \
	[ $$passed -eq $(LOAD_RUNS) ]

## test: every test (runtime code, synth snapshots, consumer module, end to end)
test: node_modules/go.mod vet
	go test -race -count=1 $(GO_UNIT_TESTS)
	go test -count=1 -timeout 30m $(GO_OUT_OF_PROCESS_TESTS)
	cd test/consumer && go test -count=1 -timeout 20m ./...

## test-clients: the Python (unittest) and Node.js (node --test) client suites against the real extension, and the handlers under the emulator (also part of test)
test-clients: node_modules/go.mod
	go test -count=1 -v ./extension/clients/

## bench: measure the extension (latency, throughput, start time, memory, size) and print one table
bench: node_modules/go.mod
	go run ./extension/bench/benchcmd

## bench-clients: cache-hit lookup cost through the Go, Python and Node.js clients, medians against the Go client's
bench-clients: node_modules/go.mod
	go run ./extension/bench/clientbenchcmd

## bench-detect: time from a downstream failure to refused callers, passive detection beside health checks
bench-detect: node_modules/go.mod
	go run ./extension/bench/detectcmd

## bench-fleet: simulate fleets of 1 to 10,000 execution environments on a per-item DynamoDB model: false trips, reaction, reads, per-item load, cost (about 5 min on 2 CPUs); writes docs/fleet.svg
bench-fleet: node_modules/go.mod
	go run ./extension/bench/fleetcmd

## bench-fleet-hour: 10,000 environments × 20 calls/s at a steady 40 % errors (0.8 × threshold) for up to an hour of simulated traffic, and a control at the threshold, within 14 min of wall time on 2 CPUs
bench-fleet-hour: node_modules/go.mod
	go run ./extension/bench/fleetcmd -hour

# Built, then run, rather than `go run`: the go command exits 1 when it sees
# the interrupt, even after the program stopped cleanly.
## local: run the whole stack on this machine (dynalite, mock API, updater, MyMicroservice under the emulator); Ctrl-C stops it
local: node_modules/go.mod
	go build -o bin/local ./infra/local
	exec bin/local $(LOCAL_FLAGS)

clean:
	rm -rf cdk.out test/consumer/cdk.out bin
