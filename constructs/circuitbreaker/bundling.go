package circuitbreaker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/constructs/circuitbreaker/internal/gobuild"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/clients"
)

// Import paths of the programs the construct compiles.
const (
	ExtensionPackage      = gobuild.ModulePath + "/extension"
	UpdaterPackage        = gobuild.ModulePath + "/functions/updater"
	MyMicroservicePackage = gobuild.ModulePath + "/functions/mymicroservice"
)

// ExtensionName is the extension's registered name and its file name under
// /opt/extensions.
const ExtensionName = "circuit-breaker"

// buildTimeout bounds one go build.
const buildTimeout = 10 * time.Minute

// goBundler compiles one Go program through CDK's local bundling.
type goBundler struct {
	target gobuild.Target
	// clients also places the Python and Node.js clients (package
	// extension/clients) in the asset: python/ and nodejs/node_modules/.
	clients bool
}

// TryBundle implements awscdk.ILocalBundling: it runs go build into the
// asset's output directory and never falls back to Docker.
func (b *goBundler) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if err := gobuild.Build(ctx, b.target, *outputDir); err != nil {
		panic(fmt.Sprintf("circuitbreaker: bundling %s: %v", b.target.Package, err))
	}
	if b.clients {
		if err := clients.Write(*outputDir); err != nil {
			panic(fmt.Sprintf("circuitbreaker: bundling the layer's clients: %v", err))
		}
	}
	return jsii.Bool(true)
}

var hashCache sync.Map // gobuild.Target -> string

// goCode returns Lambda code for a Go program compiled for arch, placed at
// output inside the asset. The extension's asset (the layer) also holds the
// Python and Node.js clients. When the stack needs bundling, the asset hash is
// a hash of the program's compiled sources, so an unchanged program keeps
// its hash; when bundling is skipped (for example in snapshot tests), the
// hash comes from the target alone and nothing is compiled.
func goCode(scope constructs.Construct, pkg string, arch awslambda.Architecture, output string) awslambda.AssetCode {
	target := gobuild.Target{Package: pkg, GOARCH: goarch(arch), Output: output, Extension: pkg == ExtensionPackage}
	withClients := target.Extension
	var hash string
	if *awscdk.Stack_Of(scope).BundlingRequired() {
		if _, err := gobuild.GoCommand(); err != nil {
			panic(fmt.Sprintf("circuitbreaker: %v", err))
		}
		if cached, ok := hashCache.Load(target); ok {
			hash = cached.(string)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
			defer cancel()
			h, err := gobuild.Hash(ctx, target)
			if err != nil {
				panic(fmt.Sprintf("circuitbreaker: %v", err))
			}
			if withClients {
				ch, err := clients.Hash()
				if err != nil {
					panic(fmt.Sprintf("circuitbreaker: %v", err))
				}
				sum := sha256.Sum256([]byte(h + "\nclients " + ch))
				h = hex.EncodeToString(sum[:])
			}
			hashCache.Store(target, h)
			hash = h
		}
	} else {
		hash = fmt.Sprintf("unbundled:%s:%s:%s", target.Package, target.GOARCH, target.Output)
	}
	return awslambda.Code_FromAsset(jsii.String(assetSourceDir()), &awss3assets.AssetOptions{
		AssetHashType: awscdk.AssetHashType_CUSTOM,
		AssetHash:     jsii.String(hash),
		Bundling: &awscdk.BundlingOptions{
			// Required by the API; never used, since local bundling always
			// succeeds or fails with a clear error.
			Image: awscdk.DockerImage_FromRegistry(jsii.String("public.ecr.aws/docker/library/golang:1.26")),
			Local: &goBundler{target: target, clients: withClients},
		},
	})
}

var (
	sourceDirOnce sync.Once
	sourceDir     string
)

// assetSourceDir is the asset's source directory. The programs are built
// by import path, so CDK needs only an existing, empty directory here: it
// is neither copied nor fingerprinted.
func assetSourceDir() string {
	sourceDirOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "circuitbreaker-empty-asset-source")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			panic(fmt.Sprintf("circuitbreaker: create asset source directory: %v", err))
		}
		sourceDir = dir
	})
	return sourceDir
}

// goarch maps a Lambda architecture to GOARCH, or "" when unsupported.
func goarch(arch awslambda.Architecture) string {
	switch *arch.Name() {
	case *awslambda.Architecture_ARM_64().Name():
		return "arm64"
	case *awslambda.Architecture_X86_64().Name():
		return "amd64"
	}
	return ""
}
