// Package buildflags holds the go build arguments of the Lambda programs,
// shared by the CDK construct's bundling, the benchmarks and the
// end-to-end tests, so all of them measure and test what ships.
package buildflags

// Common are the arguments of every program: static with CGO off (set in
// the environment), no RPC mode of the Lambda Go runtime, stripped, and
// reproducible (no paths, VCS stamps or build IDs).
var Common = []string{"-trimpath", "-buildvcs=false", "-tags", "lambda.norpc", "-ldflags", "-s -w -buildid="}

// Extension are the arguments of the extension binary, which every
// attached function's sandbox loads: Common, plus the nethttpomithttp2
// tag, which leaves net/http's HTTP/2 out (about 0.5 MB). The extension
// serves HTTP/1.1 on loopback, and DynamoDB answers over HTTP/1.1.
var Extension = []string{"-trimpath", "-buildvcs=false", "-tags", "lambda.norpc,nethttpomithttp2", "-ldflags", "-s -w -buildid="}
