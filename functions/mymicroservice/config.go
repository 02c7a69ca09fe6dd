package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Bounds of DOWNSTREAM_TIMEOUT.
const (
	defaultDownstreamTimeout = 3 * time.Second
	maxDownstreamTimeout     = 30 * time.Second
)

// config is the function's validated environment.
type config struct {
	serviceID string
	apiURL    string
	timeout   time.Duration
}

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		serviceID: strings.TrimSpace(getenv("SERVICE_ID")),
		apiURL:    strings.TrimSpace(getenv("API_URL")),
		timeout:   defaultDownstreamTimeout,
	}
	if c.serviceID == "" || c.apiURL == "" {
		return config{}, fmt.Errorf("mymicroservice: SERVICE_ID and API_URL must be set")
	}
	u, err := url.Parse(c.apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config{}, fmt.Errorf("mymicroservice: API_URL %q is not an absolute http(s) URL", c.apiURL)
	}
	if v := strings.TrimSpace(getenv("DOWNSTREAM_TIMEOUT")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > maxDownstreamTimeout {
			return config{}, fmt.Errorf("mymicroservice: DOWNSTREAM_TIMEOUT %q: want a Go duration from 1ms to %s", v, maxDownstreamTimeout)
		}
		c.timeout = d
	}
	return c, nil
}
