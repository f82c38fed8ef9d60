package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Environment variables read by the admin commands.
const (
	envAdminURL   = "TOKENGATE_ADMIN_URL"
	envAdminToken = "TOKENGATE_ADMIN_TOKEN"
)

const adminUsage = `Admin commands talk to the admin API (admin_listen):

  tokengate keys list                 signing keys, their states and dates
  tokengate keys rotate [--force]     promote the next key now
  tokengate keys revoke KID           emergency: remove a key from the JWKS at once
  tokengate keys export-public        print the published JWKS, for offline trust
  tokengate sessions show SID         is this Keycloak session logged out?
  tokengate sessions revoke SID       log a session out (renewals refused)
  tokengate subjects revoke SUB       log out every session of a user issued until now
  tokengate gen-kek                   print a new key-encryption key (base64) for keys.kek_file

Flags (before or after the arguments; -- ends them): --admin-url URL (env TOKENGATE_ADMIN_URL, default
http://127.0.0.1:9090), --token TOKEN (env TOKENGATE_ADMIN_TOKEN), -o text|json.
`

// adminClient calls the admin API.
type adminClient struct {
	base, token string
	http        *http.Client
}

// adminCommand runs "keys", "sessions" or "subjects" subcommands.
func adminCommand(ctx context.Context, group string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(group, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage) }
	base := fs.String("admin-url", envOr(envAdminURL, "http://127.0.0.1:9090"), "admin API base URL")
	token := fs.String("token", os.Getenv(envAdminToken), "admin bearer token")
	output := fs.String("o", "text", "output: text or json")
	force := fs.Bool("force", false, "keys rotate: promote even if the next key is young")
	if len(args) == 0 {
		fs.Usage()
		return fmt.Errorf("%s: a subcommand is required", group)
	}
	sub := args[0]
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return fmt.Errorf("-o must be text or json, not %q", *output)
	}
	c := &adminClient{base: strings.TrimSuffix(*base, "/"), token: *token, http: &http.Client{Timeout: 15 * time.Second}}
	if c.token == "" {
		return fmt.Errorf("an admin token is required: --token or %s", envAdminToken)
	}
	want := func(n int) error {
		if len(positional) != n {
			return fmt.Errorf("%s %s takes %d argument(s), got %d", group, sub, n, len(positional))
		}
		return nil
	}
	var (
		method, path string
		render       func(w io.Writer, body map[string]any)
	)
	switch group + " " + sub {
	case "keys list":
		if err := want(0); err != nil {
			return err
		}
		method, path, render = http.MethodGet, "/admin/keys", renderKeys
	case "keys export-public":
		if err := want(0); err != nil {
			return err
		}
		body, err := c.call(ctx, http.MethodGet, "/admin/keys", nil)
		if err != nil {
			return err
		}
		return writeIndented(stdout, body["jwks"])
	case "keys rotate":
		var payload []byte
		if *force {
			payload = []byte(`{"force":true}`)
		}
		if err := want(0); err != nil {
			return err
		}
		body, err := c.call(ctx, http.MethodPost, "/admin/keys/rotate", payload)
		return c.show(stdout, *output, body, err, renderChange)
	case "keys revoke":
		if err := want(1); err != nil {
			return err
		}
		method, path, render = http.MethodPost, "/admin/keys/"+url.PathEscape(positional[0])+"/revoke", renderChange
	case "sessions show":
		if err := want(1); err != nil {
			return err
		}
		method, path, render = http.MethodGet, "/admin/sessions/"+url.PathEscape(positional[0]), renderSession
	case "sessions revoke":
		if err := want(1); err != nil {
			return err
		}
		method, path, render = http.MethodPost, "/admin/sessions/"+url.PathEscape(positional[0])+"/revoke", renderRevocation
	case "subjects revoke":
		if err := want(1); err != nil {
			return err
		}
		method, path, render = http.MethodPost, "/admin/subjects/"+url.PathEscape(positional[0])+"/revoke", renderRevocation
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", group+" "+sub)
	}
	body, err := c.call(ctx, method, path, nil)
	return c.show(stdout, *output, body, err, render)
}

func (c *adminClient) show(w io.Writer, output string, body map[string]any, err error, render func(io.Writer, map[string]any)) error {
	if err != nil {
		return err
	}
	if output == "json" {
		return writeIndented(w, body)
	}
	render(w, body)
	return nil
}

// call sends one request and decodes the JSON answer; non-2xx answers become errors carrying
// the API's error description.
func (c *adminClient) call(ctx context.Context, method, path string, payload []byte) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API unreachable at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: read: %w", err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, fmt.Errorf("admin API: %s: answer is not JSON (HTTP %d)", path, resp.StatusCode)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("admin API: HTTP %d %v: %v", resp.StatusCode, body["error"], body["error_description"])
	}
	return body, nil
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func renderKeys(w io.Writer, body map[string]any) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tACTIVATED\tSIGNS FROM / REMOVED AT")
	keys, _ := body["keys"].([]any)
	for _, k := range keys {
		m, _ := k.(map[string]any)
		when := str(m["signs_from"]) + str(m["removed_at"])
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", str(m["kid"]), str(m["alg"]), str(m["state"]),
			str(m["created_at"]), dash(str(m["activated_at"])), dash(when))
	}
	_ = tw.Flush()
	if rev, _ := body["revoked"].([]any); len(rev) > 0 {
		fmt.Fprintln(w, "revoked:")
		for _, r := range rev {
			m, _ := r.(map[string]any)
			fmt.Fprintf(w, "  %s at %s\n", str(m["kid"]), str(m["revoked_at"]))
		}
	}
}

func renderChange(w io.Writer, body map[string]any) {
	ch, _ := body["change"].(map[string]any)
	for _, k := range []string{"activated", "retired", "published"} {
		if v := str(ch[k]); v != "" {
			fmt.Fprintf(w, "%-10s %s\n", k+":", v)
		}
	}
	if rm, _ := ch["removed"].([]any); len(rm) > 0 {
		for _, r := range rm {
			fmt.Fprintf(w, "%-10s %s\n", "removed:", str(r))
		}
	}
	fmt.Fprintf(w, "%-10s %s\n", "active:", str(body["active_kid"]))
}

func renderSession(w io.Writer, body map[string]any) {
	if body["revoked"] == true {
		r, _ := body["revocation"].(map[string]any)
		fmt.Fprintf(w, "session %s is logged out (since %s, reason %s)\n", str(body["sid"]), str(r["at"]), str(r["reason"]))
		return
	}
	fmt.Fprintf(w, "session %s has no recorded logout\n", str(body["sid"]))
}

func renderRevocation(w io.Writer, body map[string]any) {
	r, _ := body["revocation"].(map[string]any)
	target := "session " + str(r["sid"])
	if str(r["sid"]) == "" {
		target = "every session of " + str(r["sub"]) + " issued until " + str(r["at"])
	}
	fmt.Fprintf(w, "revoked %s (kept until %s)\n", target, str(r["expires"]))
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// genKEK prints a new 32-byte key-encryption key.
func genKEK(stdout io.Writer) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return errors.New("gen-kek: no randomness")
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(b))
	return nil
}

// parseInterspersed parses flags placed before or after the positional arguments. An argument
// is a flag only when it names one of fs's flags (or -h/--help): key IDs, session IDs and
// subjects may start with "-" (a base64url thumbprint does one time in 64), and
// "keys revoke -Vw9…" must revoke that key, not fail on an unknown flag. "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(positional, args[i+1:]...), nil
		}
		name, hasValue, ok := flagName(a)
		f := fs.Lookup(name)
		if !ok || (f == nil && name != "h" && name != "help") {
			positional = append(positional, a)
			continue
		}
		n := 1
		if f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args) {
			n = 2 // "-o json": the value is the next argument, whatever it looks like
		}
		if err := fs.Parse(args[i : i+n]); err != nil {
			return nil, err
		}
		i += n - 1
	}
	return positional, nil
}

// flagName returns the name of a "-name", "--name" or "--name=value" argument.
func flagName(a string) (name string, hasValue, ok bool) {
	switch {
	case strings.HasPrefix(a, "--"):
		name = a[2:]
	case strings.HasPrefix(a, "-"):
		name = a[1:]
	default:
		return "", false, false
	}
	name, _, hasValue = strings.Cut(name, "=")
	return name, hasValue, name != "" && !strings.HasPrefix(name, "-")
}

// isBoolFlag reports whether f takes no value ("--force").
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
