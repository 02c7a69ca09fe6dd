package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

const usage = `usage:
  circuitctl [flags] status [ID...]
  circuitctl [flags] open  ID --reason TEXT [--for DURATION] [--create]
  circuitctl [flags] close ID --reason TEXT [--for DURATION] [--create]
  circuitctl [flags] clear ID
flags:
  --table NAME      state table (default $CIRCUIT_BREAKER_TABLE)
  --endpoint URL    DynamoDB endpoint, e.g. the local stack's dynalite (default $AWS_ENDPOINT_URL_DYNAMODB)
  --config PATH     services listed by status without IDs (default infra/services.json)
  --create          open or close a circuit the table does not hold yet (no check has run for it)
`

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// run executes one command. db, when not nil, replaces the DynamoDB client
// built from the flags and environment (tests).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, db store.API) int {
	fs := flag.NewFlagSet("circuitctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	table := fs.String("table", getenv("CIRCUIT_BREAKER_TABLE"), "")
	endpoint := fs.String("endpoint", getenv("AWS_ENDPOINT_URL_DYNAMODB"), "")
	cfgPath := fs.String("config", appconfig.DefaultPath, "")
	reason := fs.String("reason", "", "")
	duration := fs.Duration("for", 0, "")
	create := fs.Bool("create", false, "")
	// Flags may come before or after the command and its ID.
	var positional []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			fmt.Fprintf(stderr, "circuitctl: %s\n%s", clean(err.Error()), usage)
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, ids := positional[0], positional[1:]
	if *table == "" {
		fmt.Fprintf(stderr, "circuitctl: no table: pass --table or set CIRCUIT_BREAKER_TABLE (the stack output CircuitTableName)\n")
		return exitUsage
	}
	for _, id := range ids {
		if err := circuit.ValidateID(id); err != nil {
			fmt.Fprintf(stderr, "circuitctl: %s\n", clean(err.Error()))
			return exitUsage
		}
	}
	if *duration < 0 {
		fmt.Fprintf(stderr, "circuitctl: --for must be positive\n")
		return exitUsage
	}
	if db == nil {
		client, err := newClient(ctx, *endpoint)
		if err != nil {
			fmt.Fprintf(stderr, "circuitctl: %s\n", clean(err.Error()))
			return exitError
		}
		db = client
	}
	st := store.New(db, *table).WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now().UTC()

	var err error
	switch cmd {
	case "status":
		if len(ids) == 0 {
			cfg, cerr := appconfig.Load(*cfgPath)
			if cerr != nil {
				fmt.Fprintf(stderr, "circuitctl: no IDs given and %s\n", clean(cerr.Error()))
				return exitUsage
			}
			for _, s := range cfg.Services {
				ids = append(ids, s.ID)
			}
		}
		err = status(ctx, st, ids, now, stdout)
	case "open", "close":
		if len(ids) != 1 {
			fmt.Fprintf(stderr, "circuitctl: %s takes exactly one ID\n", cmd)
			return exitUsage
		}
		if strings.TrimSpace(*reason) == "" {
			fmt.Fprintf(stderr, "circuitctl: %s needs --reason: say why, it is recorded on the circuit and in its change event\n", cmd)
			return exitUsage
		}
		o := circuit.ForcedOpen
		if cmd == "close" {
			o = circuit.ForcedClosed
		}
		var until time.Time
		if *duration > 0 {
			until = now.Add(*duration)
		}
		if !*create {
			r, rerr := st.ReadCircuit(ctx, ids[0])
			if rerr != nil {
				fmt.Fprintf(stderr, "circuitctl: %s\n", clean(rerr.Error()))
				return exitError
			}
			if !r.Found && !r.LegacyOverrideItem {
				fmt.Fprintf(stderr, "circuitctl: the table holds no circuit %q: no check or call has recorded it yet. Check the ID (a typo would override a circuit nobody monitors), or pass --create\n", ids[0])
				return exitUsage
			}
		}
		if _, err = st.SetOverride(ctx, ids[0], o, *reason, until, now); err == nil {
			err = status(ctx, st, ids, now, stdout)
		}
	case "clear":
		if len(ids) != 1 {
			fmt.Fprintf(stderr, "circuitctl: clear takes exactly one ID\n")
			return exitUsage
		}
		var cleared bool
		if _, cleared, err = st.ClearOverride(ctx, ids[0], now); err == nil {
			if !cleared {
				fmt.Fprintf(stdout, "%s had no override\n", clean(ids[0]))
			}
			err = status(ctx, st, ids, now, stdout)
		}
	default:
		fmt.Fprintf(stderr, "circuitctl: unknown command %s\n%s", clean(strconv.Quote(cmd)), usage)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "circuitctl: %s\n", clean(err.Error()))
		return exitError
	}
	return exitOK
}

// newClient builds a DynamoDB client from the environment; with an endpoint
// (a local DynamoDB) it needs no real credentials or region.
func newClient(ctx context.Context, endpoint string) (*dynamodb.Client, error) {
	var opts []func(*config.LoadOptions) error
	if endpoint != "" {
		opts = append(opts, config.WithRegion("us-east-1"),
			config.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: "local", SecretAccessKey: "local"}, nil
			})))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	}), nil
}

// status prints the circuits as a table.
func status(ctx context.Context, st *store.Store, ids []string, now time.Time, out io.Writer) error {
	got, err := st.ReadMany(ctx, ids)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tEFFECTIVE\tSTATE\tOVERRIDE\tUNTIL\tVERSION\tUPDATED\tREASON")
	for _, id := range ids {
		r, ok := got[id]
		c := r.Circuit
		if !ok {
			c = circuit.New(id)
		}
		effective, state := string(c.EffectiveState(now)), string(c.State)
		if r.Unreadable != nil {
			// The item cannot be decoded: its state is unknown, and
			// extensions apply their failure policy unless an override
			// is in force. The next check of the updater rewrites it.
			state = "UNREADABLE"
			if c.ActiveOverride(now) == circuit.NoOverride {
				effective = "FAILURE_POLICY"
			}
			c.Reason = r.Unreadable.Error()
		}
		override, until := "-", "-"
		if o := c.ActiveOverride(now); o != circuit.NoOverride {
			override = string(o) + " (" + c.OverrideReason + ")"
			if !o.Valid() {
				override = "unknown " + override
			}
			if !c.OverrideUntil.IsZero() {
				until = c.OverrideUntil.UTC().Format(time.RFC3339)
			} else {
				until = "never"
			}
		} else if c.Override != circuit.NoOverride {
			override = "expired " + string(c.Override)
		} else if r.DroppedOverride != "" {
			// A legacy override attribute that is no override: ignored,
			// never migrated; clear removes it.
			override = "unknown " + r.DroppedOverride + " (ignored)"
		}
		updated, reason := "never", c.Reason
		if !c.UpdatedAt.IsZero() {
			updated = c.UpdatedAt.UTC().Format(time.RFC3339)
		}
		if reason == "" {
			reason = "-"
		}
		// Reasons and overrides come from the table, which attached
		// functions can write: every field is escaped.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", clean(id), clean(effective), clean(state), clean(override), until, c.Version, updated, clean(reason))
	}
	if err := tw.Flush(); err != nil {
		return errors.Join(errors.New("write status"), err)
	}
	return nil
}

// clean escapes what a terminal would act on: control characters (escape
// sequences, tabs, newlines, carriage returns), Unicode format characters
// such as bidirectional overrides, and invalid UTF-8, each as a Go escape
// (\x1b, \t, \u202e). Everything else is printed as is.
func clean(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x100 && unicode.IsControl(r):
			fmt.Fprintf(&b, "\\x%02x", r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
