package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/annalsdb/annals/groups"
	"github.com/spf13/cobra"
)

func (m *Main) newConsumeCmd() *cobra.Command {
	var (
		name    string
		window  int
		count   int
		nack    string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "consume GROUP",
		Short: "Join a consumer group, print its events and ack them, until Ctrl-C",
		Long: `Join the consumer group GROUP as a consumer and print each event the group hands it, as 'annals
tail' prints it, then ack it (or, with --nack, nack it with that action: retry, park or skip),
until Ctrl-C (exit status 0) or --count events. An event is settled only after its line is
written, so an interrupted consume leaves nothing unprinted acked. Other consumers of the group
share its events.

With --server the consumer joins the server's group. On a data directory the group runs in
this process: consume delivers what the store holds and waits for more, but no other process
can append to the directory meanwhile (serve it with 'annals serve' to share it).

` + formatHelp,
		Example: `  annals consume orders
  annals --server http://localhost:2113 consume orders --name worker-1 --count 10 --json
  annals consume orders --nack park --count 1`,
		Args: argsBetween(1, 1, "GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			group := args[0]
			if err := checkGroupName(cmd, group); err != nil {
				return err
			}
			if cmd.Flags().Changed("name") {
				if err := groups.ValidateName("consumer", name); err != nil {
					return usageErrorf(cmd, "--name: %s", trimSentinels(err.Error()))
				}
			}
			if window < 0 || window > groups.MaxWindow {
				return usageErrorf(cmd, "--window %d: want 1 to %d (0: the default, %d)", window, groups.MaxWindow, groups.DefaultWindow)
			}
			if count < 0 {
				return usageErrorf(cmd, "--count %d: want 0 (until Ctrl-C) or more", count)
			}
			var nk *groups.Nack
			if nack != "" {
				nk = &groups.Nack{Action: groups.Action(nack), Reason: "nacked by annals consume"}
				if err := nk.Validate(); err != nil {
					return usageErrorf(cmd, "--nack %q: want retry, park or skip", nack)
				}
			}
			ctx := cmd.Context()
			return m.withGroups(ctx, true, func(gs groups.Service) error {
				c, err := gs.Join(ctx, group, &groups.JoinOptions{Name: name, Window: window})
				if err != nil {
					return groupError(group, err)
				}
				err = m.consume(ctx, c, nk, count, jsonOut)
				cerr := c.Close()
				switch {
				case err != nil:
					return groupError(group, err)
				case cerr != nil && !errors.Is(cerr, groups.ErrConsumerClosed):
					return fmt.Errorf("leave group %s: %w", group, cerr)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the consumer's name in the group's figures (default: one the group makes up)")
	cmd.Flags().IntVar(&window, "window", 0, fmt.Sprintf("the most events held unsettled at once, up to %d (default %d)", groups.MaxWindow, groups.DefaultWindow))
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many events (0: until Ctrl-C)")
	cmd.Flags().StringVar(&nack, "nack", "", "nack each event with this action instead of acking it: retry, park or skip")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON lines (the format below) instead of text")
	return cmd
}

// settleTimeout bounds the ack or nack of an event consume printed.
const settleTimeout = 15 * time.Second

// consume prints and settles the messages of c until ctx ends (nil) or count messages were
// settled (0: no bound). It settles each message after its line is flushed: with an ack, or
// with nk when it is not nil.
func (m *Main) consume(ctx context.Context, c groups.Consumer, nk *groups.Nack, count int, jsonOut bool) error {
	p := newPrinter(m.Stdout, jsonOut)
	for n := 0; count == 0 || n < count; n++ {
		msg, err := c.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C: the normal way to end
			}
			return err
		}
		if err := p.event(&msg.Event); err != nil {
			return err
		}
		if err := p.flush(); err != nil {
			return err
		}
		// A printed event is settled even when Ctrl-C comes meanwhile.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		if nk != nil {
			err = c.Nack(sctx, *nk, msg.Event.ID)
		} else {
			err = c.Ack(sctx, msg.Event.ID)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("settle event %s: %w", msg.Event.ID, err)
		}
	}
	return nil
}
