// Package benchenv sets up what the extension's measurement commands
// (bench, bench-clients, bench-detect) share: the extension built as the
// layer ships it, and a dynalite table holding circuits.
package benchenv

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
)

// ExtensionName is the extension's file name in the layer, which the
// emulator also requires under /opt/extensions.
const ExtensionName = "circuit-breaker"

// BuildExtension builds the extension as the construct ships it, for linux
// on goarch ("" for the host), into dir, and returns the binary's path.
func BuildExtension(ctx context.Context, dir, goarch string) (string, error) {
	root, err := dynalite.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, ExtensionName)
	if goarch != "" {
		bin += "-" + goarch
	}
	if err := rie.BuildFor(ctx, root, "./extension", bin, goarch); err != nil {
		return "", fmt.Errorf("build extension %s: %w", goarch, err)
	}
	return bin, nil
}

// Table launches dynalite and creates table in it, holding a CLOSED
// circuit for each of ids. The caller stops the server.
func Table(ctx context.Context, table string, ids ...string) (*dynalite.Server, error) {
	dyn, err := dynalite.Launch()
	if err != nil {
		return nil, err
	}
	db := dyn.Client()
	if err := dynalite.CreateTable(ctx, db, table); err != nil {
		dyn.Stop()
		return nil, err
	}
	for _, id := range ids {
		item, err := store.Encode(circuit.Circuit{ID: id, State: circuit.Closed, Version: 1, UpdatedAt: time.Now()})
		if err == nil {
			_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item})
		}
		if err != nil {
			dyn.Stop()
			return nil, fmt.Errorf("seed circuit %q: %w", id, err)
		}
	}
	return dyn, nil
}
