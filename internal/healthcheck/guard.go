package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// Address classes a check refuses to connect to, unless the Checker was
// made with AllowLocalTargets.
const (
	classLoopback    = "loopback"
	classLinkLocal   = "link-local"
	classMetadata    = "metadata"
	classUnspecified = "unspecified"
)

// metadataAddrs are the instance and task metadata endpoints of AWS
// (IMDS over IPv4 and IPv6, the ECS task metadata endpoint).
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("169.254.170.2"),
	netip.MustParseAddr("fd00:ec2::254"),
}

// awsLinkLocalV6 holds the IPv6 addresses of the instance services of
// AWS (metadata, DNS, time), which sit in a unique local range.
var awsLinkLocalV6 = netip.MustParsePrefix("fd00:ec2::/32")

// thisNetwork is 0.0.0.0/8: connecting to it reaches the local host.
var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// addressClass returns the class of a refused address, or "" for an
// address a check may connect to: public and private (RFC 1918, unique
// local) addresses are allowed; loopback, link-local, unspecified and
// metadata addresses are not. IPv4-mapped IPv6 addresses are judged as
// IPv4.
func addressClass(a netip.Addr) string {
	a = a.Unmap()
	for _, m := range metadataAddrs {
		if a == m {
			return classMetadata
		}
	}
	switch {
	case awsLinkLocalV6.Contains(a):
		return classMetadata
	case a.IsLoopback():
		return classLoopback
	case a.IsUnspecified() || (a.Is4() && thisNetwork.Contains(a)):
		return classUnspecified
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast():
		return classLinkLocal
	}
	return ""
}

// blockedError is a connection the address guard refused.
type blockedError struct{ class string }

func (e *blockedError) Error() string { return "address not allowed: " + e.class }

// redirectError is a redirect the checker refused to follow.
type redirectError struct {
	status int
	class  string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("redirect refused (status %d): %s", e.status, e.class)
}

// dialGuard is a net.Dialer Control function: it runs after name
// resolution, on the address actually dialled, so a name that resolves
// (or is rebound) to a refused address cannot slip through. allowed, when
// not nil, lets a test mark a local address as allowed.
func dialGuard(allowed func(netip.AddrPort) bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &blockedError{class: "unparsable address"}
		}
		if allowed != nil && allowed(ap) {
			return nil
		}
		if class := addressClass(ap.Addr()); class != "" {
			return &blockedError{class: class}
		}
		return nil
	}
}

// redirectTrace records, for one check, the status of the last redirect
// followed, so that a connection refused after it is reported as a
// refused redirect.
type redirectTrace struct{ status int }

type traceKey struct{}

func traceFrom(ctx context.Context) *redirectTrace {
	t, _ := ctx.Value(traceKey{}).(*redirectTrace)
	return t
}

// asRefused turns a refused redirect or connection into its fixed
// description, or reports false.
func asRefused(ctx context.Context, err error) (string, bool) {
	var re *redirectError
	if errors.As(err, &re) {
		return re.Error(), true
	}
	var be *blockedError
	if !errors.As(err, &be) {
		return "", false
	}
	if t := traceFrom(ctx); t != nil && t.status != 0 {
		return (&redirectError{status: t.status, class: be.Error()}).Error(), true
	}
	return be.Error(), true
}
