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
//   - no inlining inside the AWS SDK's packages (SDKNoInline), which keeps
//     the arm64 binary under 8,000,000 bytes (about 37 KB less code, and
//     64 KB less file, as segments are aligned to 64 KB). Only table calls
//     run that code, and a read's own work is a small part of its time
//     next to the network; the lookups answered from memory run none of
//     it, and every other package is compiled as before.
var Extension = []string{"-trimpath", "-buildvcs=false", "-tags", "lambda.norpc,nethttpomithttp2", SDKNoInline, "-ldflags", "-s -w -buildid="}

// SDKNoInline turns inlining off in the AWS SDK's packages (see Extension).
const SDKNoInline = "-gcflags=github.com/aws/...=-l"
