package store

import "time"

// MergeSession is the rule for recording a session logout r over a stored one: the earliest At
// wins (with its Sub and Reason; a missing Sub is filled from the other), and the latest
// Expires is kept. Every backend applies it so they agree.
func MergeSession(old, r Revocation) Revocation {
	out := old
	if r.At.Before(old.At) {
		out = r
	}
	if out.Sub == "" {
		out.Sub = r.Sub
	}
	out.Expires = latest(old.Expires, r.Expires)
	return out
}

// MergeSubject is the rule for recording a subject-wide logout r over a stored one: the latest
// At wins (with its Reason), and the latest Expires is kept.
func MergeSubject(old, r Revocation) Revocation {
	out := old
	if r.At.After(old.At) {
		out = r
	}
	out.Expires = latest(old.Expires, r.Expires)
	return out
}

// Covers reports whether the stored revocation old already refuses everything r would: any
// session record refuses the whole session; a subject record refuses what was issued up to
// its At, so it covers r when its At is not before r's.
func Covers(old, r Revocation) bool {
	if r.SID != "" {
		return old.SID == r.SID
	}
	return old.Sub == r.Sub && !old.At.Before(r.At)
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
