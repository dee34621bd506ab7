package main

// TEMPORARY: this file stands in for the bench command another helper is writing; replace it
// with theirs.

import (
	"errors"

	"github.com/spf13/cobra"
)

func newBenchCmd(m *Main) *cobra.Command {
	return &cobra.Command{
		Use:   "bench",
		Short: "Measure the store's performance (not built yet)",
		Args:  argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("bench is not built yet")
		},
	}
}
