package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/annalsdb/annals/server"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

func (m *Main) newPasswdCmd() *cobra.Command {
	var (
		cost  int
		token bool
	)
	cmd := &cobra.Command{
		Use:   "passwd",
		Short: "Hash a password (or make an API token) for the auth file of 'annals serve'",
		Long: `Read a password and print its bcrypt hash, for the passwordHash of a user in the auth file
of 'annals serve --auth FILE'. On a terminal the password is asked twice without echo;
otherwise it is the first line of stdin.

With --token, make a random API token instead and print it (give it to the program, which
sends it as "Authorization: Bearer <token>") and its SHA-256 (the sha256 of the token in
the auth file, which never holds the token itself).`,
		Example: `  annals passwd
  echo -n 'correct horse' | annals passwd
  annals passwd --token`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if token {
				t := server.NewToken()
				_, err := fmt.Fprintf(m.Stdout, "token:  %s\nsha256: %s\n", t, server.HashToken(t))
				return err
			}
			if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
				return usageErrorf(cmd, "--cost %d: want %d to %d", cost, bcrypt.MinCost, bcrypt.MaxCost)
			}
			pw, err := m.readPassword()
			if err != nil {
				return err
			}
			h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
			if err != nil {
				return fmt.Errorf("hash: %w", err)
			}
			_, err = fmt.Fprintf(m.Stdout, "%s\n", h)
			return err
		},
	}
	cmd.Flags().IntVar(&cost, "cost", bcrypt.DefaultCost, "bcrypt cost (each step doubles the time a login takes)")
	cmd.Flags().BoolVar(&token, "token", false, "make a random API token and print it with its SHA-256")
	return cmd
}

// readPassword reads the password from the terminal (twice, without echo) or the first line
// of stdin.
func (m *Main) readPassword() (string, error) {
	if f, ok := m.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(m.Stderr, "password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(m.Stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(m.Stderr, "again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(m.Stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ; nothing was hashed")
		}
		if len(a) == 0 {
			return "", errors.New("empty password")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(m.Stdin).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		return "", errors.New("empty password (write it on stdin)")
	}
	if len(line) > 72 {
		return "", errors.New("password longer than 72 bytes (bcrypt's limit)")
	}
	return line, nil
}
