package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
)

// TestParseInterspersed_ArgumentsThatLookLikeFlags: key IDs, session IDs and subjects may start
// with "-" (a base64url thumbprint does one time in 64); they stay arguments unless they name a
// flag, and "--" ends the flags.
func TestParseInterspersed_ArgumentsThatLookLikeFlags(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		positional []string
		output     string
		force      bool
		err        string
	}{
		{args: []string{"-Vw9XeAfa0aotSf2pZ"}, positional: []string{"-Vw9XeAfa0aotSf2pZ"}, output: "text"},
		{args: []string{"--Vw9"}, positional: []string{"--Vw9"}, output: "text"},
		{args: []string{"-o", "json", "-Vw9"}, positional: []string{"-Vw9"}, output: "json"},
		{args: []string{"-Vw9", "-o", "json"}, positional: []string{"-Vw9"}, output: "json"},
		{args: []string{"-Vw9", "--o=json", "--force"}, positional: []string{"-Vw9"}, output: "json", force: true},
		{args: []string{"--force", "--", "-o", "--force"}, positional: []string{"-o", "--force"}, output: "text", force: true},
		{args: []string{"kid-1", "-"}, positional: []string{"kid-1", "-"}, output: "text"},
		{args: []string{"---o", "x"}, positional: []string{"---o", "x"}, output: "text"},
		// A flag's value is the next argument whatever it looks like.
		{args: []string{"-o", "-x"}, err: `-o must be text or json`},
		{args: []string{"kid", "-o"}, err: "flag needs an argument"},
		{args: []string{"--force=maybe"}, err: "invalid boolean value"},
		{args: []string{"--help"}, err: flag.ErrHelp.Error()},
		{args: []string{"-h", "kid"}, err: flag.ErrHelp.Error()},
	} {
		fs := flag.NewFlagSet("keys", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		output := fs.String("o", "text", "")
		force := fs.Bool("force", false, "")
		positional, err := parseInterspersed(fs, tc.args)
		if err == nil && *output != "text" && *output != "json" {
			err = errors.New("-o must be text or json")
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(positional, tc.positional) || *output != tc.output || *force != tc.force {
			t.Errorf("%q: positional %q, -o %q, --force %v, err %v; want %q, %q, %v",
				tc.args, positional, *output, *force, err, tc.positional, tc.output, tc.force)
		}
	}
}
