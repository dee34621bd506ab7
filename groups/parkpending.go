package groups

import "context"

// parkPending writes the parks the loop did not write, or was stopped in, once the loop has
// stopped: the final checkpoint may then pass them. A park written again is recognised by the
// ids of its copies. The entries of a park that fails stay unsettled, so the checkpoint does
// not pass them and a restart delivers them again.
func (g *group) parkPending(ctx context.Context) {
	g.mu.Lock()
	parks := g.mu.parking
	g.mu.parking = nil
	g.mu.Unlock()
	if len(parks) == 0 {
		return
	}
	if err := g.park(ctx, parks); err != nil {
		g.logger().Warn("group: parking events at close failed; they are delivered again", "err", err)
	}
}
