//go:build !testhold

package restore

import "context"

// holdAfterFirst does nothing: only a binary built with the tag testhold honours TestHoldEnv.
func (p *Plan) holdAfterFirst(context.Context, string) {}
