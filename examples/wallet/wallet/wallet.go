// Package wallet is the domain of the wallet service: a wallet's events, its commands, and the
// decider that turns the one into the other. A wallet is the stream "wallet-<id>".
package wallet

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
)

// Event is an event of a wallet.
type Event interface{ walletEvent() }

// The events. Amounts are in cents.
type (
	Opened    struct{ Owner string }
	Deposited struct{ Amount int64 }
	// TransferSent: money left the wallet for wallet To; the transfer process credits it there.
	TransferSent struct {
		To     string
		Amount int64
	}
	TransferReceived struct {
		From   string
		Amount int64
	}
	// TransferReturned: wallet To refused a transfer, and the money came back.
	TransferReturned struct {
		To     string
		Amount int64
		Reason string
	}
)

func (Opened) walletEvent()           {}
func (Deposited) walletEvent()        {}
func (TransferSent) walletEvent()     {}
func (TransferReceived) walletEvent() {}
func (TransferReturned) walletEvent() {}

// Register registers the events in reg under their stored names.
func Register(reg *codec.Registry) error {
	return errors.Join(
		codec.Register[Opened](reg, "WalletOpened", nil),
		codec.Register[Deposited](reg, "Deposited", nil),
		codec.Register[TransferSent](reg, "TransferSent", nil),
		codec.Register[TransferReceived](reg, "TransferReceived", nil),
		codec.Register[TransferReturned](reg, "TransferReturned", nil),
	)
}

// Command is a command to a wallet.
type Command interface{ walletCommand() }

// The commands. Receive and Return are the transfer process's.
type (
	Open struct {
		Owner string `json:"owner"`
	}
	Deposit struct {
		Amount int64 `json:"amount"`
	}
	Transfer struct {
		To     string `json:"to"`
		Amount int64  `json:"amount"`
	}
	Receive struct {
		From   string
		Amount int64
	}
	Return struct {
		To     string
		Amount int64
		Reason string
	}
)

func (Open) walletCommand()     {}
func (Deposit) walletCommand()  {}
func (Transfer) walletCommand() {}
func (Receive) walletCommand()  {}
func (Return) walletCommand()   {}

// The domain's refusals.
var (
	ErrAlreadyOpen = errors.New("wallet: already open")
	ErrNotOpen     = errors.New("wallet: not open")
	ErrNoFunds     = errors.New("wallet: insufficient funds")
)

var validID = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// ValidID returns an error naming id when it is not 1 to 64 lower-case letters and digits.
func ValidID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("wallet id %q: want 1 to 64 lower-case letters and digits", id)
	}
	return nil
}

// Stream returns the stream of wallet id.
func Stream(id string) string { return "wallet-" + id }

// ID returns the id of the wallet whose stream is stream.
func ID(stream string) string { return strings.TrimPrefix(stream, "wallet-") }

// Validate checks a command on its own, before any wallet is read.
func Validate(c Command) error {
	var amount int64
	switch c := c.(type) {
	case Open:
		if c.Owner == "" || len(c.Owner) > 100 {
			return errors.New("owner: want 1 to 100 bytes")
		}
		return nil
	case Deposit:
		amount = c.Amount
	case Transfer:
		if err := ValidID(c.To); err != nil {
			return fmt.Errorf("to: %w", err)
		}
		amount = c.Amount
	case Receive:
		amount = c.Amount
	case Return:
		amount = c.Amount
	}
	if amount <= 0 || amount > 1e12 {
		return fmt.Errorf("amount %d: want 1 to 10^12 cents", amount)
	}
	return nil
}

// State is a wallet as its commands see it.
type State struct {
	Open    bool
	Balance int64
}

// Decider is the wallet's decider.
var Decider = decider.Decider[State, Command, Event]{
	Initial: func() State { return State{} },
	Decide:  decide,
	Evolve:  evolve,
}

func decide(s State, c Command) ([]Event, error) {
	switch _, opening := c.(Open); {
	case opening && s.Open:
		return nil, ErrAlreadyOpen
	case !opening && !s.Open:
		return nil, ErrNotOpen
	}
	switch c := c.(type) {
	case Open:
		return []Event{Opened{Owner: c.Owner}}, nil
	case Deposit:
		return []Event{Deposited{Amount: c.Amount}}, nil
	case Receive:
		return []Event{TransferReceived{From: c.From, Amount: c.Amount}}, nil
	case Return:
		return []Event{TransferReturned{To: c.To, Amount: c.Amount, Reason: c.Reason}}, nil
	case Transfer:
		if s.Balance < c.Amount {
			return nil, ErrNoFunds
		}
		return []Event{TransferSent{To: c.To, Amount: c.Amount}}, nil
	}
	return nil, fmt.Errorf("wallet: unknown command %T", c)
}

func evolve(s State, e Event) State {
	switch e := e.(type) {
	case Opened:
		s.Open = true
	case Deposited:
		s.Balance += e.Amount
	case TransferReceived:
		s.Balance += e.Amount
	case TransferReturned:
		s.Balance += e.Amount
	case TransferSent:
		s.Balance -= e.Amount
	}
	return s
}
