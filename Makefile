# Every target works offline with no AWS account and no credentials.
SHELL := /bin/bash
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_REGION ?= us-east-1
export CDK_DISABLE_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := true

# Listed, not ./..., because node_modules holds .go template files.
GO_PACKAGES_FAST := ./internal/... ./extension/... ./functions/...
GO_PACKAGES_ALL := $(GO_PACKAGES_FAST) ./constructs/... ./infra/... ./test/...

.PHONY: all synth test test-fast test-clients vet bench bench-detect local clean local

all: synth

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

## synth: build the Go binaries and synthesize the stack into cdk.out/
synth: node_modules/.package-lock.json
	npx --no-install cdk synth --quiet
	@echo "template: cdk.out/LambdaCircuitBreakerStack.template.json"

## vet: gofmt and go vet
vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet $(GO_PACKAGES_ALL)

## test-fast: unit tests of the runtime code, with the race detector
test-fast: node_modules/.package-lock.json
	go test -race -count=1 $(GO_PACKAGES_FAST)

## test: every test (runtime code, synth snapshots, consumer module, end to end)
test: node_modules/.package-lock.json vet
	go test -race -count=1 $(GO_PACKAGES_FAST)
	go test -count=1 -timeout 30m ./constructs/... ./infra/... ./test/...
	cd test/consumer && go test -count=1 -timeout 20m ./...

## test-clients: the Python (unittest) and Node.js (node --test) client suites against the real extension (also part of test-fast and test)
test-clients: node_modules/.package-lock.json
	go test -count=1 -v -run 'ClientSuite' ./extension/clients/

## bench: measure the extension (latency, throughput, start time, memory, size) and print one table
bench: node_modules/.package-lock.json
	go run ./extension/internal/benchcmd

## bench-detect: time from a downstream failure to refused callers, passive detection beside health checks
bench-detect: node_modules/.package-lock.json
	go run ./extension/internal/detectcmd

## local: run the whole stack on this machine (dynalite, mock API, updater, MyMicroservice under the emulator); Ctrl-C stops it
local: node_modules/.package-lock.json
	go run ./infra/local $(LOCAL_FLAGS)

clean:
	rm -rf cdk.out test/consumer/cdk.out
