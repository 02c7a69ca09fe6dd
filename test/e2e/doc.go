// Package e2e holds end-to-end tests: the real extension binary runs as an
// external extension under the AWS Lambda Runtime Interface Emulator,
// beside a small function that queries it, with dynalite as the table.
package e2e
