// Package buildflags holds the go build arguments of the Lambda programs,
// shared by the CDK construct's bundling, the benchmarks and the
// end-to-end tests, so all of them measure and test what ships.
package buildflags

// Common are the arguments of every program: static with CGO off (set in
// the environment), no RPC mode of the Lambda Go runtime, stripped, and
// reproducible (no paths, VCS stamps or build IDs).
var Common = []string{"-trimpath", "-buildvcs=false", "-tags", "lambda.norpc", "-ldflags", "-s -w -buildid="}

// Extension are the arguments of the extension binary, which every
// attached function's sandbox loads: Common, plus
//
//   - the nethttpomithttp2 tag, which leaves net/http's HTTP/2 out (about
//     0.5 MB): the extension serves HTTP/1.1 on loopback, and DynamoDB
//     answers over HTTP/1.1;
//   - no inlining in the packages that only table calls, start-up and TLS
//     handshakes run (NoInline), which keeps the arm64 binary under
//     8,000,000 bytes (segments are aligned to 64 KB, so the file moves in
//     steps of 64 KB). A table call's own work is a small part of its time
//     next to the network; a lookup answered from memory runs the
//     extension's own packages, net/http and encoding/json, all compiled
//     as before.
var Extension = append(append([]string{"-trimpath", "-buildvcs=false", "-tags", "lambda.norpc,nethttpomithttp2"}, NoInline...), "-ldflags", "-s -w -buildid=")

// NoInline turns inlining off (see Extension) in the AWS SDK, in the
// project's shared packages (the table store, circuit rules, policies:
// table calls and decisions, not the lookup's HTTP path), and in the
// parts of the standard library that only parse certificates and keys
// (TLS handshakes) or compile regular expressions (at start). Each -gcflags
// argument applies to the packages its pattern matches.
var NoInline = []string{
	"-gcflags=github.com/aws/...=-l",
	"-gcflags=github.com/circuitbreaked/lambda-circuit-breaker/internal/...=-l",
	"-gcflags=regexp/syntax=-l",
	"-gcflags=crypto/x509=-l",
	"-gcflags=math/big=-l",
	"-gcflags=encoding/asn1=-l",
}
