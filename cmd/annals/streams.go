package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/annalsdb/annals"
	"github.com/spf13/cobra"
)

func (m *Main) newStreamsCmd() *cobra.Command {
	var (
		prefix  string
		limit   int
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "List the streams with their revision and event count",
		Long: `List the user streams that exist (not deleted), in byte-wise order of their ids, with the
revision of each stream's last event and its number of events (counted since it was last
created, if it was soft-deleted and written again). With --json, one object per line:
{"stream":..,"revision":..,"count":..}.`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usageErrorf(cmd, "--limit %d: want 0 (no limit) or more", limit)
			}
			return m.withStore(cmd.Context(), true, func(s annals.Store) error {
				var tw *tabwriter.Writer
				n := 0
				for info, err := range s.ListStreams(cmd.Context(), &annals.ListOptions{Prefix: prefix, Limit: limit}) {
					if err != nil {
						if tw != nil {
							tw.Flush()
						}
						return err
					}
					n++
					if jsonOut {
						b, err := json.Marshal(struct {
							Stream   string `json:"stream"`
							Revision uint64 `json:"revision"`
							Count    uint64 `json:"count"`
						}{info.Stream, info.Revision, info.Count})
						if err != nil {
							return err
						}
						if _, err := fmt.Fprintf(m.Stdout, "%s\n", b); err != nil {
							return err
						}
						continue
					}
					if tw == nil {
						tw = tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
						fmt.Fprintln(tw, "STREAM\tREVISION\tEVENTS")
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\n", info.Stream, info.Revision, info.Count)
				}
				if tw != nil {
					return tw.Flush()
				}
				if n == 0 && !jsonOut {
					_, err := fmt.Fprintln(m.Stdout, "no streams")
					return err
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "list only the streams whose id starts with this")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most this many streams (0: no limit)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON lines")
	return cmd
}
