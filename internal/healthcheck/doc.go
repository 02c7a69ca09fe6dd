// Package healthcheck is the updater's HTTP probe: one GET against a
// service's health URL, judged on time, transport errors, status and
// latency.
//
// A check fails on a timeout, a connection or TLS error, too many
// redirects, a status outside the expected set, or a response slower than
// the slow-call threshold. It reads at most MaxBodyBytes of the body,
// follows at most MaxRedirects redirects, opens a fresh connection every
// time (so that connection failures are seen) and identifies itself with
// the UserAgent header.
package healthcheck
