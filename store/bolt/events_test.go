package bolt

import (
	"path/filepath"
	"testing"

	"github.com/tokengate/tokengate/store/storetest"
)

func TestEventLogConformance(t *testing.T) {
	storetest.RunEventLog(t, func(t *testing.T) storetest.EventStore { return openTemp(t, Options{}) })
}

func TestEventLogDurable(t *testing.T) {
	storetest.RunEventLogDurable(t, func(t *testing.T, dir string) storetest.EventStore {
		s, err := Open(filepath.Join(dir, "tokengate.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
