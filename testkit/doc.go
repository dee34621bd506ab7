// Package testkit helps test the application code built on Annals, without a store.
//
// Deciders ([ForDecider], [Given]): given past events, when a command, then the events decided
// or an error. The fixture runs the handler's Validate on the command and puts every event and
// state through the registry's codec, so that a test fails where the handler or a snapshot
// would see something else.
//
//	carts := testkit.ForDecider(cart.Decider, reg, &decider.Options[cart.Command]{Validate: cart.Validate})
//	carts.Given(t, cart.ItemAdded{SKU: "apple", Qty: 1}).
//		When(cart.RemoveItem{SKU: "apple"}).
//		Then(cart.ItemRemoved{SKU: "apple"})
//
// Projections ([ForProjection]): given typed events, encoded with the registry and run by a
// real projection runner over an in-memory store, expect a read model
// ([ProjectionFixture.Then]).
//
// Both report failures with go-cmp diffs of what was wanted and what was got.
package testkit
