// Package updater is the logic of the updater Lambda function: it parses
// the EventBridge rule's constant input for one monitored service, runs one
// health check and applies the result to the service's circuit through
// package store.
//
// functions/updater wires it to the Lambda runtime; everything here runs
// in tests against dynalite and httptest servers.
package updater
