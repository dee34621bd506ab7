package wallet_test

import (
	"testing"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/wallet/wallet"
	"github.com/annalsdb/annals/testkit"
)

// wallets runs the decider as the service's handler does: commands checked by Validate, events
// and states through the registry.
var wallets = testkit.ForDecider(wallet.Decider, registry(), &decider.Options[wallet.Command]{Validate: wallet.Validate})

func registry() *codec.Registry {
	reg := codec.New(nil)
	if err := wallet.Register(reg); err != nil {
		panic(err)
	}
	return reg
}

func TestDecider(t *testing.T) {
	open := []any{wallet.Opened{Owner: "Ann"}, wallet.Deposited{Amount: 100}}
	wallets.Given(t).When(wallet.Open{Owner: "Ann"}).Then(wallet.Opened{Owner: "Ann"})
	wallets.Given(t, open...).When(wallet.Open{Owner: "Ann"}).ThenError(wallet.ErrAlreadyOpen)
	wallets.Given(t).When(wallet.Deposit{Amount: 5}).ThenError(wallet.ErrNotOpen)
	wallets.Given(t).When(wallet.Receive{From: "bob", Amount: 5}).ThenError(wallet.ErrNotOpen)
	wallets.Given(t, open...).When(wallet.Transfer{To: "bob", Amount: 60}).Then(wallet.TransferSent{To: "bob", Amount: 60})
	wallets.Given(t, open...).When(wallet.Transfer{To: "bob", Amount: 101}).ThenError(wallet.ErrNoFunds)
	wallets.Given(t, append(open, wallet.TransferSent{To: "bob", Amount: 60})...).
		When(wallet.Return{To: "bob", Amount: 60, Reason: "x"}).ThenState(wallet.State{Open: true, Balance: 100})
	wallets.Given(t, open...).When(wallet.Receive{From: "bob", Amount: 7}).ThenState(wallet.State{Open: true, Balance: 107})
	for _, c := range []wallet.Command{wallet.Open{}, wallet.Deposit{Amount: 0}, wallet.Deposit{Amount: 2e12},
		wallet.Transfer{To: "Bob", Amount: 1}, wallet.Receive{}, wallet.Return{}} {
		wallets.Given(t, open...).When(c).ThenError(decider.ErrInvalidCommand)
	}
}
