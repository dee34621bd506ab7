// Package testkit helps test the application code built on Annals, without a store.
//
// Deciders ([Given]): given past events, when a command, then the events decided or an error.
//
//	testkit.Given(t, cart.Decider, cart.ItemAdded{SKU: "apple", Qty: 1}).
//		When(cart.RemoveItem{SKU: "apple"}).
//		Then(cart.ItemRemoved{SKU: "apple"})
//
// Projections ([ForProjection]): given events, run by a real projection runner over an
// in-memory store, expect a read model ([ProjectionFixture.Then]).
//
// Both report failures with go-cmp diffs of what was wanted and what was got.
package testkit
