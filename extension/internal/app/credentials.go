package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
)

// Environment variables that carry the function's credentials.
const (
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	// EnvContainerCredentialsURI is the container credentials endpoint
	// that Lambda gives functions without static keys (SnapStart restores,
	// Managed Instances); requests to it carry
	// AWS_CONTAINER_AUTHORIZATION_TOKEN in the Authorization header.
	EnvContainerCredentialsURI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
)

// Credential sources, as logged at start.
const (
	SourceEnvironment = "environment"
	SourceEndpoint    = "container endpoint"
)

const (
	// credentialsExpiryWindow: credentials from the endpoint are
	// refreshed this long before they expire (less up to a fifth of it,
	// at random), so that no table call is signed with credentials about
	// to expire.
	credentialsExpiryWindow = 5 * time.Minute
	// credentialsJitter is the random share of the window.
	credentialsJitter = 0.2
	// credentialsRetry: when a refresh fails while the current credentials
	// are still valid for longer than this, they keep being used and the
	// refresh is tried again after this long.
	credentialsRetry = 30 * time.Second
	// credentialsTimeout bounds one call to the endpoint. The call goes on
	// after the read that started it gives up, so it needs its own bound.
	credentialsTimeout = 2 * time.Second
)

// ErrNoCredentials is returned when the environment holds neither static
// keys nor a container credentials endpoint.
var ErrNoCredentials = errors.New("no AWS credentials: neither " + EnvAccessKeyID + " and " + EnvSecretAccessKey +
	" nor " + EnvContainerCredentialsURI + " is set")

// EnvCredentials returns the credentials that Lambda gives the function,
// read through getenv, and their source:
//
//   - AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN when
//     the keys are set (on-demand and provisioned concurrency);
//   - otherwise the container credentials endpoint,
//     AWS_CONTAINER_CREDENTIALS_FULL_URI, called with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN (SnapStart, Managed Instances). Its
//     credentials are cached and refreshed five minutes (less a random
//     share of up to one minute) before they expire; if a refresh fails
//     while they are still valid, they keep being used and the refresh is
//     retried 30 s later.
//
// It makes no network call. Neither source is ErrNoCredentials; an
// endpoint that is not https, nor http to a loopback or link-local
// container address, is an error too, as in the AWS SDKs.
func EnvCredentials(getenv func(string) string) (*Credentials, string, error) {
	key, secret := getenv(EnvAccessKeyID), getenv(EnvSecretAccessKey)
	if key != "" && secret != "" {
		creds := aws.Credentials{
			AccessKeyID:     key,
			SecretAccessKey: secret,
			SessionToken:    getenv(api.EnvSessionToken),
			Source:          "EnvironmentVariables",
		}
		static := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
		return &Credentials{CredentialsProvider: static, invalidate: func() {}}, SourceEnvironment, nil
	}
	uri := strings.TrimSpace(getenv(EnvContainerCredentialsURI))
	if uri == "" {
		return nil, "", ErrNoCredentials
	}
	if err := validateEndpoint(uri); err != nil {
		return nil, "", fmt.Errorf("%s: %w", EnvContainerCredentialsURI, err)
	}
	token := getenv(api.EnvContainerAuthToken)
	p := &endpointCredentials{Provider: endpointcreds.New(uri, func(o *endpointcreds.Options) {
		o.AuthorizationToken = token
		o.HTTPClient = &http.Client{
			Timeout: credentialsTimeout,
			Transport: &http.Transport{
				Proxy:               nil, // the endpoint is local: never through a proxy
				DialContext:         (&net.Dialer{Timeout: credentialsTimeout}).DialContext,
				MaxIdleConnsPerHost: 1,
				IdleConnTimeout:     time.Minute,
			},
		}
	})}
	cached := aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = credentialsExpiryWindow
		o.ExpiryWindowJitterFrac = credentialsJitter
	})
	return &Credentials{CredentialsProvider: cached, invalidate: func() {
		p.forget()
		cached.Invalidate()
	}}, SourceEndpoint, nil
}

// Credentials are the function's credentials as EnvCredentials finds
// them: they sign the table calls.
type Credentials struct {
	aws.CredentialsProvider
	invalidate func()
}

// Invalidate drops every credential fetched from the container endpoint
// so far, the ones kept for a failed refresh included, and makes any
// fetch in progress fetch again: the next table call is signed with
// credentials fetched after this call. The extension calls it when its
// memory was restored from a snapshot (cache.Options.OnRestore), which
// may be days old. Keys from the environment are read once and stay.
func (c *Credentials) Invalidate() { c.invalidate() }

// validateEndpoint accepts https, or http to a loopback address
// ("localhost" included) or to the container credentials addresses of ECS
// and EKS, which are link-local.
func validateEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", raw)
		}
		return nil
	case "http":
	default:
		return fmt.Errorf("%q: want an http or https URL", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%q: plain http is accepted only to a loopback or container address, not to the name %q", raw, host)
	}
	for _, allowed := range []string{"169.254.170.2", "169.254.170.23", "fd00:ec2::23"} {
		if ip == netip.MustParseAddr(allowed) {
			return nil
		}
	}
	if !ip.IsLoopback() {
		return fmt.Errorf("%q: plain http is accepted only to a loopback or container address", raw)
	}
	return nil
}

// endpointCredentials is the endpoint's provider with the two strategies
// of aws.CredentialsCache that keep valid credentials in use when a
// refresh fails.
type endpointCredentials struct {
	*endpointcreds.Provider

	mu sync.Mutex
	// last are the last credentials the endpoint gave, with their real
	// expiry.
	last aws.Credentials
	// fallback is set when HandleFailToRefresh returned last, for the
	// AdjustExpiresBy call that follows it.
	fallback bool
	// generation counts the calls to forget.
	generation uint64
}

// Retrieve calls the endpoint and keeps what it returned. Credentials
// whose call was under way when forget was called may have been fetched
// before a restore: the endpoint is called again.
func (p *endpointCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	for {
		p.mu.Lock()
		gen := p.generation
		p.mu.Unlock()
		c, err := p.Provider.Retrieve(ctx)
		if err != nil {
			return aws.Credentials{}, fmt.Errorf("container credentials endpoint: %w", err)
		}
		p.mu.Lock()
		if p.generation != gen {
			p.mu.Unlock()
			continue
		}
		p.last = c
		p.mu.Unlock()
		return c, nil
	}
}

// forget drops the kept credentials, so that a failed refresh cannot fall
// back to them, and makes a call under way call again.
func (p *endpointCredentials) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.fallback = aws.Credentials{}, false
	p.generation++
}

// HandleFailToRefresh implements
// aws.HandleFailRefreshCredentialsCacheStrategy: the last credentials stay
// in use while they are valid for longer than credentialsRetry.
func (p *endpointCredentials) HandleFailToRefresh(_ context.Context, _ aws.Credentials, err error) (aws.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.HasKeys() || !p.last.CanExpire || time.Until(p.last.Expires) <= credentialsRetry {
		return aws.Credentials{}, err
	}
	p.fallback = true
	return p.last, nil
}

// AdjustExpiresBy implements aws.AdjustExpiresByCredentialsCacheStrategy:
// fresh credentials expire in the cache d (the negative window) before
// their real expiry; kept ones after credentialsRetry, when the refresh
// is tried again.
func (p *endpointCredentials) AdjustExpiresBy(c aws.Credentials, d time.Duration) (aws.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fallback {
		p.fallback = false
		c.Expires = time.Now().Add(credentialsRetry)
		return c, nil
	}
	c.Expires = c.Expires.Add(d)
	return c, nil
}
