package rie

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Credentials are what a container credentials endpoint hands out.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Expiration is when they expire; zero means in an hour from each
	// request.
	Expiration time.Time
}

// CredentialsRequest is one request the endpoint received.
type CredentialsRequest struct {
	// Authorization is the request's Authorization header.
	Authorization string
	// Path is the request's path.
	Path string
	// At is when it arrived.
	At time.Time
	// Status is the status the endpoint answered.
	Status int
}

// CredentialsEndpoint is a container credentials endpoint on 127.0.0.1,
// such as Lambda gives SnapStart and Managed Instances sandboxes instead
// of AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN. It
// answers requests that carry its token in the Authorization header, 401
// others, and records every request.
type CredentialsEndpoint struct {
	// URL is the endpoint's full URI, for AWS_CONTAINER_CREDENTIALS_FULL_URI.
	URL string
	// Token is the authorization token, for AWS_CONTAINER_AUTHORIZATION_TOKEN.
	Token string

	creds Credentials
	mu    sync.Mutex
	reqs  []CredentialsRequest
}

// StartCredentialsEndpoint serves creds with a random token until the
// test ends.
func StartCredentialsEndpoint(tb testing.TB, creds Credentials) *CredentialsEndpoint {
	tb.Helper()
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		tb.Fatal(err)
	}
	e := &CredentialsEndpoint{Token: hex.EncodeToString(tok), creds: creds}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	srv.Config.ReadHeaderTimeout = 5 * time.Second
	srv.Start() // httptest listens on 127.0.0.1
	tb.Cleanup(srv.Close)
	e.URL = srv.URL + "/2021-04-23/credentials"
	return e
}

func (e *CredentialsEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	rec := CredentialsRequest{Authorization: r.Header.Get("Authorization"), Path: r.URL.Path, At: time.Now(), Status: http.StatusOK}
	defer func() {
		e.mu.Lock()
		e.reqs = append(e.reqs, rec)
		e.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/json")
	if rec.Authorization != e.Token {
		rec.Status = http.StatusUnauthorized
		w.WriteHeader(rec.Status)
		_, _ = w.Write([]byte(`{"code":"InvalidToken","message":"missing or wrong authorization token"}`))
		return
	}
	exp := e.creds.Expiration
	if exp.IsZero() {
		exp = time.Now().Add(time.Hour)
	}
	_ = json.NewEncoder(w).Encode(map[string]string{
		"AccessKeyId":     e.creds.AccessKeyID,
		"SecretAccessKey": e.creds.SecretAccessKey,
		"Token":           e.creds.SessionToken,
		"Expiration":      exp.UTC().Format(time.RFC3339),
	})
}

// Requests returns the requests received so far, in order.
func (e *CredentialsEndpoint) Requests() []CredentialsRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]CredentialsRequest(nil), e.reqs...)
}

// SnapStartEnv returns env as Lambda shapes a SnapStart (or Managed
// Instances) sandbox's: without AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
// and AWS_SESSION_TOKEN, with AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN pointing at e.
func (e *CredentialsEndpoint) SnapStartEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env)+2)
	for k, v := range env {
		switch k {
		case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN":
			continue
		}
		out[k] = v
	}
	out["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = e.URL
	out["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = e.Token
	return out
}
