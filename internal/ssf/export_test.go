package ssf

import "context"

// ExpireInactive runs one inactivity sweep (Run does it periodically).
func (t *Transmitter) ExpireInactive(ctx context.Context) { t.expireInactive(ctx) }
