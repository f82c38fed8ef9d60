package server

import (
	"net/url"
	"reflect"
	"testing"
)

// FuzzParseForm checks that parseForm answers exactly what url.ParseQuery answers: the same
// values, or an error whenever url.ParseQuery errs.
func FuzzParseForm(f *testing.F) {
	for _, seed := range []string{
		"", "&", "&&a=1&&", "a", "a=", "=b", "a=1&a=2&b=3", "a=1;b=2", "a;=1", "a=b;c",
		"grant_type=refresh_token&refresh_token=eyJhbGciOiJkaXIifQ..aGVsbG8.d29ybGQ.dGFn",
		"a=%41&b=+", "a=%zz", "a=%4", "=&=", "a=b=c",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		want, wantErr := url.ParseQuery(body)
		got, err := parseForm(body)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("parseForm(%q) error = %v, url.ParseQuery error = %v", body, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("parseForm(%q) = %v, url.ParseQuery = %v", body, got, want)
		}
	})
}
