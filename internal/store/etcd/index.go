package etcd

import (
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/store"
)

// kind is the record type a key holds.
type kind int

const (
	kindSession kind = iota
	kindSubject
	kindJTI
	numKinds
	kindKeys
	kindOther
)

func (k kind) String() string {
	switch k {
	case kindSession:
		return "session"
	case kindSubject:
		return "subject"
	case kindJTI:
		return "jti"
	case kindKeys:
		return "keys"
	}
	return "other"
}

// entry is one record of the local index and the etcd revision that last wrote it. A jti
// claim uses only rev.Expires.
type entry struct {
	rev store.Revocation
	mod int64
}

// jtiRecord is the stored value of a jti claim.
type jtiRecord struct {
	Expires time.Time `json:"expires"`
}

type recordID struct {
	kind kind
	id   string
}

// index is the local copy of every revocation and jti claim. Updates come from the watch and,
// ahead of it, from this process's own committed writes (read-your-writes); each carries its
// etcd revision so that whichever arrives second is ignored.
type index struct {
	mu      sync.RWMutex
	records [numKinds]map[string]entry
	// tombs remembers deletes applied ahead of the watch (by GC), so that an older put the
	// watch has yet to deliver does not bring the record back. Pruned once the watch passes.
	tombs map[recordID]int64
}

func (x *index) init() {
	for k := range x.records {
		x.records[k] = map[string]entry{}
	}
	x.tombs = map[recordID]int64{}
}

// get returns the record of kind k and id.
func (x *index) get(k kind, id string) (entry, bool) {
	x.mu.RLock()
	e, ok := x.records[k][id]
	x.mu.RUnlock()
	return e, ok
}

// put stores e unless the index already holds that record at a revision as recent.
func (x *index) put(k kind, id string, e entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.putLocked(k, id, e)
}

func (x *index) putLocked(k kind, id string, e entry) {
	if t, ok := x.tombs[recordID{k, id}]; ok && t >= e.mod {
		return
	}
	if old, ok := x.records[k][id]; ok && old.mod >= e.mod {
		return
	}
	x.records[k][id] = e
}

// remove deletes the record if the index holds it at a revision older than rev. ahead marks a
// delete applied before the watch delivered it.
func (x *index) remove(k kind, id string, rev int64, ahead bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(k, id, rev, ahead)
}

func (x *index) removeLocked(k kind, id string, rev int64, ahead bool) {
	if old, ok := x.records[k][id]; ok && old.mod < rev {
		delete(x.records[k], id)
	}
	if ahead {
		rid := recordID{k, id}
		if rev > x.tombs[rid] {
			x.tombs[rid] = rev
		}
	}
}

// pruneTombs forgets deletes the watch has delivered (revision ≤ upTo).
func (x *index) pruneTombs(upTo int64) {
	x.mu.RLock()
	n := len(x.tombs)
	x.mu.RUnlock()
	if n == 0 {
		return
	}
	x.mu.Lock()
	for rid, rev := range x.tombs {
		if rev <= upTo {
			delete(x.tombs, rid)
		}
	}
	x.mu.Unlock()
}

// replace installs records loaded at revision rev, keeping whatever this process applied
// after rev.
func (x *index) replace(records [numKinds]map[string]entry, rev int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.records
	x.records = records
	for k := range old {
		for id, e := range old[k] {
			if e.mod > rev {
				x.putLocked(kind(k), id, e)
			}
		}
	}
	for rid, t := range x.tombs {
		if t <= rev {
			delete(x.tombs, rid)
			continue
		}
		if e, ok := x.records[rid.kind][rid.id]; ok && e.mod < t {
			delete(x.records[rid.kind], rid.id)
		}
	}
}

// candidate is a record GC may delete if etcd still holds it at revision mod.
type candidate struct {
	kind kind
	id   string
	mod  int64
}

// expired lists the records whose Expires is before now.
func (x *index) expired(now time.Time) []candidate {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []candidate
	for k := range x.records {
		for id, e := range x.records[k] {
			if e.rev.Expires.Before(now) {
				out = append(out, candidate{kind(k), id, e.mod})
			}
		}
	}
	return out
}

// parse splits an etcd key into the kind of record and its id.
func (s *Store) parse(key string) (kind, string) {
	switch {
	case key == s.keysKey:
		return kindKeys, ""
	case strings.HasPrefix(key, s.sessionsPrefix):
		return kindSession, key[len(s.sessionsPrefix):]
	case strings.HasPrefix(key, s.subjectsPrefix):
		return kindSubject, key[len(s.subjectsPrefix):]
	case strings.HasPrefix(key, s.jtisPrefix):
		return kindJTI, key[len(s.jtisPrefix):]
	}
	return kindOther, ""
}

// key returns the etcd key of a record.
func (s *Store) key(k kind, id string) string {
	switch k {
	case kindSession:
		return s.sessionsPrefix + id
	case kindSubject:
		return s.subjectsPrefix + id
	case kindJTI:
		return s.jtisPrefix + id
	}
	return s.keysKey
}

// decode turns a stored value into an index entry.
func decode(k kind, value []byte, mod int64) (entry, error) {
	e := entry{mod: mod}
	if k == kindJTI {
		var j jtiRecord
		if err := json.Unmarshal(value, &j); err != nil {
			return entry{}, err
		}
		e.rev.Expires = j.Expires
		return e, nil
	}
	err := json.Unmarshal(value, &e.rev)
	return e, err
}
