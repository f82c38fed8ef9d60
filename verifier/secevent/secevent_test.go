package secevent_test

import (
	"encoding/json"
	"testing"

	"github.com/tokengate/tokengate/verifier/secevent"
)

// TestAudience_OneIsAStringManyAnArray: aud is read as a string or an array (RFC 7519 §4.1.3)
// and written as a string when it holds one value; anything else is refused.
func TestAudience_OneIsAStringManyAnArray(t *testing.T) {
	for in, want := range map[string]string{`"a"`: `"a"`, `["a"]`: `"a"`, `["a","b"]`: `["a","b"]`} {
		var a secevent.Audience
		if err := json.Unmarshal([]byte(in), &a); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if out, _ := json.Marshal(a); string(out) != want {
			t.Errorf("%s written as %s, want %s", in, out, want)
		}
	}
	for _, in := range []string{`1`, `{"a":1}`, `[1]`, `true`} {
		var a secevent.Audience
		if err := json.Unmarshal([]byte(in), &a); err == nil {
			t.Errorf("aud %s accepted as %q", in, a)
		}
	}
	if a := (secevent.Audience{"a", "b"}); a.Is("a") || !a.Contains("b") || !(secevent.Audience{"a"}).Is("a") {
		t.Error("Is must want exactly one value; Contains any")
	}
}

// TestSET_WrittenAsSSFProfiles: a SET as a transmitter fills it carries no sub and no exp
// (SSF 1.0 §4.1), and a receiver reads its event body back.
func TestSET_WrittenAsSSFProfiles(t *testing.T) {
	iat := int64(1_700_000_000)
	s := secevent.SET{Issuer: "https://tg", Audience: secevent.Audience{"orders"}, JTI: "1-x", IssuedAt: &iat,
		SubID:  &secevent.SubjectID{Format: secevent.FormatOpaque, ID: "sid-1"},
		Events: map[string]json.RawMessage{secevent.EventSessionRevoked: secevent.EventBody(secevent.Event{EventTimestamp: &iat, InitiatingEntity: "user"})}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"iss":"https://tg","aud":"orders","jti":"1-x","iat":1700000000,"sub_id":{"format":"opaque","id":"sid-1"},` +
		`"events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{"event_timestamp":1700000000,"initiating_entity":"user"}}}`
	if string(b) != want {
		t.Fatalf("SET = %s\nwant  %s", b, want)
	}
	var back secevent.SET
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	ev, ok, err := back.Event(secevent.EventSessionRevoked)
	if !ok || err != nil || ev.EventTimestamp == nil || *ev.EventTimestamp != iat || ev.InitiatingEntity != "user" || back.Subject != nil || back.Expiry != nil {
		t.Errorf("read back: %+v %v %v, sub %v exp %v", ev, ok, err, back.Subject, back.Expiry)
	}
	if _, ok, _ := back.Event(secevent.EventVerification); ok {
		t.Error("an event the SET does not carry was found")
	}
	if err := json.Unmarshal([]byte(`{"events":{"`+secevent.EventSessionRevoked+`":"x"}}`), &back); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := back.Event(secevent.EventSessionRevoked); !ok || err == nil {
		t.Error("an event body that is not an object must be an error")
	}
}

// TestURLs: the metadata lives at the well-known path before the issuer's path (SSF 1.0 §7.2),
// and one stream is addressed by its stream_id query parameter, escaped.
func TestURLs(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://tg.example":              "https://tg.example/.well-known/ssf-configuration",
		"https://kc.example/realms/demo/": "https://kc.example/.well-known/ssf-configuration/realms/demo",
	} {
		if got, err := secevent.MetadataURL(issuer); err != nil || got != want {
			t.Errorf("MetadataURL(%q) = %q, %v; want %q", issuer, got, err, want)
		}
	}
	for _, bad := range []string{"", "tg.example", "::"} {
		if got, err := secevent.MetadataURL(bad); err == nil {
			t.Errorf("MetadataURL(%q) = %q, want an error", bad, got)
		}
	}
	if got := secevent.StreamURL("https://tg/ssf/streams?x=1", "a b&c"); got != "https://tg/ssf/streams?stream_id=a+b%26c&x=1" {
		t.Errorf("StreamURL = %q", got)
	}
}

// TestIsSETType: typ secevent+jwt in any case, with or without application/ (RFC 7515 §4.1.9).
func TestIsSETType(t *testing.T) {
	for typ, want := range map[string]bool{"secevent+jwt": true, "application/SECEVENT+JWT": true, "JWT": false, "": false, "at+jwt": false} {
		if secevent.IsSETType(typ) != want {
			t.Errorf("IsSETType(%q) = %v", typ, !want)
		}
	}
}

// TestCheckPoll: a stream is followed only with the transmitter's iss, poll delivery to an
// endpoint and one aud.
func TestCheckPoll(t *testing.T) {
	good := secevent.StreamConfiguration{StreamID: "s", Issuer: "https://tg", Audience: secevent.Audience{"orders"},
		Delivery: secevent.Delivery{Method: secevent.DeliveryPoll, EndpointURL: "https://tg/ssf/poll/s"}}
	if err := good.CheckPoll("https://tg"); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*secevent.StreamConfiguration){
		"other iss":   func(sc *secevent.StreamConfiguration) { sc.Issuer = "https://evil" },
		"push":        func(sc *secevent.StreamConfiguration) { sc.Delivery.Method = secevent.DeliveryPush },
		"no endpoint": func(sc *secevent.StreamConfiguration) { sc.Delivery.EndpointURL = "" },
		"two aud":     func(sc *secevent.StreamConfiguration) { sc.Audience = append(sc.Audience, "x") },
		"no aud":      func(sc *secevent.StreamConfiguration) { sc.Audience = nil },
	} {
		sc := good
		sc.Audience = append(secevent.Audience(nil), good.Audience...)
		edit(&sc)
		if err := sc.CheckPoll("https://tg"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
