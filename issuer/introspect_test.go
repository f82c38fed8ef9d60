package issuer

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/upstream"
)

// TestPackIntrospection_RoundTrip: the packed cache entry gives back every field exchange
// reads, long and empty strings and lists included.
func TestPackIntrospection_RoundTrip(t *testing.T) {
	now := time.Unix(1_700_000_000, 123)
	long := strings.Repeat("r", 300)
	for _, c := range []struct {
		at upstream.AccessToken
		r  upstream.Introspection
	}{
		{upstream.AccessToken{Subject: "s", Expiry: now.Add(time.Hour), IssuedAt: now, Audience: []string{"tokengate", "account"}, AuthorizedParty: "bff"},
			upstream.Introspection{Active: true, Subject: "s", SID: "sid-1", Scope: "openid profile", ClientID: "bff",
				PreferredUsername: "alice", ACR: "1", AuthTime: 1_699_999_000}},
		{upstream.AccessToken{Subject: long, Expiry: now, IssuedAt: now}, upstream.Introspection{SessionState: "ss", ACR: long}},
	} {
		c.r.RealmAccess.Roles = []string{"user", long, ""}
		e := packIntrospection(c.at, c.r, now)
		at, r := e.unpack()
		want := upstream.Introspection{Active: c.r.Active, Subject: c.r.Subject, SID: c.r.Session(), Scope: c.r.Scope,
			ClientID: c.r.ClientID, PreferredUsername: c.r.PreferredUsername, ACR: c.r.ACR, AuthTime: c.r.AuthTime,
			RealmAccess: c.r.RealmAccess}
		if !reflect.DeepEqual(r, want) {
			t.Errorf("answer = %+v, want %+v", r, want)
		}
		if at.Subject != c.at.Subject || at.AuthorizedParty != c.at.AuthorizedParty || !at.Expiry.Equal(c.at.Expiry) ||
			!at.IssuedAt.Equal(c.at.IssuedAt) || !reflect.DeepEqual(at.Audience, c.at.Audience) {
			t.Errorf("token = %+v, want %+v", at, c.at)
		}
		if !e.fetched().Equal(now) {
			t.Errorf("fetched = %v", e.fetched())
		}
	}
}
