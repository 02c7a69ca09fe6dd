package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/config"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/fakeclock"
)

// credsEndpoint is a container credentials endpoint: it answers with the
// next of its keys, or with status when set, and records the
// Authorization headers it got.
type credsEndpoint struct {
	*httptest.Server
	expires func() time.Time
	status  atomic.Int32
	calls   atomic.Int32
	mu      sync.Mutex
	auth    []string
}

func newCredsEndpoint(t *testing.T, expires func() time.Time) *credsEndpoint {
	t.Helper()
	e := &credsEndpoint{expires: expires}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := e.calls.Add(1)
		e.mu.Lock()
		e.auth = append(e.auth, r.Header.Get("Authorization"))
		e.mu.Unlock()
		if s := e.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			_, _ = w.Write([]byte(`{"code":"Unavailable","message":"try later"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{
			"AccessKeyId":     "AKIDENDPOINT" + string(rune('0'+n)),
			"SecretAccessKey": "secret",
			"Token":           "session-from-endpoint",
			"Expiration":      e.expires().UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *credsEndpoint) authHeaders() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.auth...)
}

// signedWith is a DynamoDB stand-in that records the access key ID of each
// request's signature and answers every GetItem with no item.
func signedWith(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		_, cred, _ := strings.Cut(auth, "Credential=")
		key, _, _ := strings.Cut(cred, "/")
		mu.Lock()
		keys = append(keys, key+"|"+r.Header.Get("X-Amz-Security-Token"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		// A BatchGetItem finds every circuit (or read copy) asked for, with
		// its override attribute and K, as the updater leaves them: one
		// call per read.
		var in struct {
			RequestItems map[string]struct{ Keys []map[string]any }
		}
		if r.Header.Get("X-Amz-Target") == "DynamoDB_20120810.BatchGetItem" && json.NewDecoder(r.Body).Decode(&in) == nil {
			out := map[string]any{}
			for table, ka := range in.RequestItems {
				var items []map[string]any
				for _, k := range ka.Keys {
					items = append(items, map[string]any{"id": k["id"], "readCopies": map[string]any{"N": "4"}, "operatorOverride": map[string]any{"M": map[string]any{"rev": map[string]any{"N": "1"}}}})
				}
				out[table] = items
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"Responses": out})
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), keys...)
	}
}

func getItem(t *testing.T, api interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
}) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := api.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"), Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "x"}}})
	return err
}

func TestEnvDynamoDBCredentialSources(t *testing.T) {
	ep := newCredsEndpoint(t, func() time.Time { return time.Now().Add(time.Hour) })
	tests := []struct {
		name     string
		env      map[string]string
		wantKey  string // access key ID|session token the table sees
		wantAuth string // Authorization header the endpoint got; "" when not called
	}{
		{
			name:    "on-demand: keys in the environment",
			env:     map[string]string{"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "session-env"},
			wantKey: "AKIDENV|session-env",
		},
		{
			name:    "keys win over the endpoint",
			env:     map[string]string{"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.URL, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok"},
			wantKey: "AKIDENV|",
		},
		{
			name:     "SnapStart: the container endpoint with its token",
			env:      map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.URL + "/2021-04-23/credentials", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-token"},
			wantKey:  "AKIDENDPOINT1|session-from-endpoint",
			wantAuth: "container-token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep.calls.Store(0)
			db, keys := signedWith(t)
			env := map[string]string{"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_DYNAMODB": db.URL}
			for k, v := range tt.env {
				env[k] = v
			}
			api, _, err := EnvDynamoDB(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if ep.calls.Load() != 0 {
				t.Fatal("EnvDynamoDB called the endpoint; it must make no network call")
			}
			for range 2 {
				if err := getItem(t, api); err != nil {
					t.Fatal(err)
				}
			}
			if got := keys(); len(got) != 2 || got[0] != tt.wantKey || got[1] != tt.wantKey {
				t.Errorf("table saw %v, want %q twice", got, tt.wantKey)
			}
			calls := ep.calls.Load()
			switch {
			case tt.wantAuth == "" && calls != 0:
				t.Errorf("endpoint called %d times, want none", calls)
			case tt.wantAuth != "" && calls != 1:
				t.Errorf("endpoint called %d times for two reads, want once (cached)", calls)
			case tt.wantAuth != "" && ep.authHeaders()[0] != tt.wantAuth:
				t.Errorf("endpoint got Authorization %q, want %q", ep.authHeaders()[0], tt.wantAuth)
			}
		})
	}
}

func TestEnvDynamoDBErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no credentials", map[string]string{"AWS_REGION": "us-east-1"}, "neither AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set"},
		{"key without secret", map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "a"}, "no AWS credentials"},
		{"no region", map[string]string{"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}, "AWS_REGION is not set"},
		{"plain http to a remote host", map[string]string{"AWS_REGION": "us-east-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://203.0.113.7/creds"}, "loopback or container address"},
		{"plain http to a name", map[string]string{"AWS_REGION": "us-east-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://creds.example.com/"}, "not to the name"},
		{"not a URL scheme", map[string]string{"AWS_REGION": "us-east-1", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "file:///etc/passwd"}, "want an http or https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := EnvDynamoDB(func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("EnvDynamoDB = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateEndpoint(t *testing.T) {
	for _, ok := range []string{
		"http://127.0.0.1:9001/2021-04-23/credentials", "http://localhost:1234/", "http://[::1]:80/",
		"http://169.254.170.2/v2/credentials", "http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/",
		"https://creds.example.com/",
	} {
		if err := validateEndpoint(ok); err != nil {
			t.Errorf("validateEndpoint(%q) = %v, want accepted", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1/", "http://169.254.169.254/", "ftp://127.0.0.1/", "https:///x", "::"} {
		if err := validateEndpoint(bad); err == nil {
			t.Errorf("validateEndpoint(%q) accepted", bad)
		}
	}
}

// Credentials from the endpoint are fetched again once within the expiry
// window, before they expire; a refresh that fails while they are still
// valid keeps them in use, and one that fails after they expired fails
// the read.
func TestEndpointCredentialsRefresh(t *testing.T) {
	var expires atomic.Value
	// Already within the expiry window, whatever its random share.
	expires.Store(time.Now().Add(credentialsExpiryWindow - time.Duration(credentialsJitter*float64(credentialsExpiryWindow)) - time.Second))
	ep := newCredsEndpoint(t, func() time.Time { return expires.Load().(time.Time) })
	prov, source, err := EnvCredentials(func(k string) string {
		return map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.URL, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok"}[k]
	})
	if err != nil || source != SourceEndpoint {
		t.Fatalf("EnvCredentials = %q, %v", source, err)
	}
	ctx := context.Background()
	c1, err := prov.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := prov.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ep.calls.Load() != 2 || c1.AccessKeyID == c2.AccessKeyID {
		t.Fatalf("credentials within the expiry window: %d endpoint calls, keys %s then %s; want a refresh", ep.calls.Load(), c1.AccessKeyID, c2.AccessKeyID)
	}

	// The endpoint fails; the credentials in hand are valid for minutes.
	ep.status.Store(http.StatusServiceUnavailable)
	c3, err := prov.Retrieve(ctx)
	if err != nil || c3.AccessKeyID != c2.AccessKeyID {
		t.Fatalf("refresh failed with valid credentials in hand: %v, %s; want %s kept", err, c3.AccessKeyID, c2.AccessKeyID)
	}
	before := ep.calls.Load()
	if _, err := prov.Retrieve(ctx); err != nil || ep.calls.Load() != before {
		t.Errorf("kept credentials: %v, %d more endpoint calls; want them served without a call until the retry", err, ep.calls.Load()-before)
	}

	// Credentials that are about to expire are not kept past a failure.
	expires.Store(time.Now().Add(credentialsRetry / 2))
	ep.status.Store(0)
	prov, _, _ = EnvCredentials(func(k string) string {
		return map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.URL}[k]
	})
	if _, err := prov.Retrieve(ctx); err != nil {
		t.Fatal(err)
	}
	ep.status.Store(http.StatusInternalServerError)
	_, err = prov.Retrieve(ctx)
	var re *aws.RequestCanceledError
	if err == nil || !strings.Contains(err.Error(), "container credentials endpoint") || errors.As(err, &re) {
		t.Errorf("refresh failed with credentials about to expire: %v, want the endpoint's error", err)
	}
}

// After a restore from a snapshot, found by the cache on its injected
// clocks, no table call is signed with the credentials fetched before it:
// the first read fetches new ones from the endpoint, and when the endpoint
// fails, the read fails rather than fall back to the old ones.
func TestRestoreInvalidatesEndpointCredentials(t *testing.T) {
	tests := []struct {
		name         string
		endpointDown bool
		wantKeys     []string // access key IDs that signed the table calls
		wantStale    bool
	}{
		{name: "new credentials after the restore", wantKeys: []string{"AKIDENDPOINT1", "AKIDENDPOINT2"}},
		{name: "endpoint down after the restore: no call signed with the old ones", endpointDown: true, wantKeys: []string{"AKIDENDPOINT1"}, wantStale: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := newCredsEndpoint(t, func() time.Time { return time.Now().Add(time.Hour) })
			ddb, signed := signedWith(t)
			env := map[string]string{
				"AWS_REGION":                         "eu-west-1",
				"AWS_ENDPOINT_URL_DYNAMODB":          ddb.URL,
				"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.URL,
				"AWS_CONTAINER_AUTHORIZATION_TOKEN":  "tok",
			}
			api, creds, err := EnvDynamoDB(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			db := newLazyStore()
			db.set(store.New(api, "t"), nil)
			clk := fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			cfg := config.Config{MissTimeout: 10 * time.Second}
			cfg.RefreshInterval, cfg.MaxAge = time.Second, 2*time.Second
			o := cacheOptions(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), creds.Invalidate)
			o.Now, o.Uptime = clk.Now, clk.Uptime
			c := cache.New(db, o)
			ctx := context.Background()
			if v := c.Get(ctx, "payments"); v.Stale { // INIT, before the snapshot
				t.Fatalf("first read: %+v", v)
			}
			if tt.endpointDown {
				ep.status.Store(http.StatusServiceUnavailable)
			}
			clk.Restore(72 * time.Hour)
			v := c.Get(ctx, "payments")
			if err := c.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, k := range signed() {
				key, _, _ := strings.Cut(k, "|")
				keys = append(keys, key)
			}
			if strings.Join(keys, ",") != strings.Join(tt.wantKeys, ",") {
				t.Errorf("table calls signed with %v, want %v", keys, tt.wantKeys)
			}
			if v.Stale != tt.wantStale {
				t.Errorf("lookup after the restore: stale %v, want %v (%+v)", v.Stale, tt.wantStale, v)
			}
		})
	}
}

// BenchmarkTableRead measures one read of a circuit through the table
// client that EnvDynamoDB builds, against a loopback stand-in that answers
// at once: the client's own work (serialising, signing, decoding), which a
// lookup that waits for the table pays besides the network.
func BenchmarkTableRead(b *testing.B) {
	// Get reads the circuit and its override item with one BatchGetItem.
	item := `{"Responses":{"t":[{"id":{"S":"payments"},"state":{"S":"OPEN"},"version":{"N":"7"},"updatedAt":{"N":"1767312000000"},"reason":{"S":"failure rate"},"failures":{"N":"5"},"successes":{"N":"0"},"openCount":{"N":"1"},"retryAt":{"N":"1767312030000"}}]},"UnprocessedKeys":{}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(item))
	}))
	b.Cleanup(srv.Close)
	env := map[string]string{"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_DYNAMODB": srv.URL, "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"}
	api, _, err := EnvDynamoDB(func(k string) string { return env[k] })
	if err != nil {
		b.Fatal(err)
	}
	st := store.New(api, "t").WithEventualReads()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if c, found, err := st.Get(ctx, "payments"); err != nil || !found || c.State != "OPEN" {
			b.Fatalf("read = %+v, %v, %v; want the OPEN circuit", c, found, err)
		}
	}
}
